"""The ONNX Runtime frame graph (infer/onnx_talker.py: step, depth heads and sampling in one call)
against the eager Talker and sampler: the same codes, and a cache folder that heals itself."""
import sys

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from codectts.errors import ConfigError, GenerationError  # noqa: E402
from codectts.infer import onnx_talker  # noqa: E402
from codectts.infer.onnx_talker import OnnxTalker  # noqa: E402
from codectts.infer.talker import TalkerGenerator  # noqa: E402
from codectts.models.sampling import SamplingConfig  # noqa: E402
from codectts.models.talker import Talker, preset  # noqa: E402


@pytest.fixture(scope="module")
def talker() -> Talker:
    torch.manual_seed(0)
    model = Talker(preset("tiny", n_codebooks=3, n_heads=4, n_kv_heads=2)).eval()  # 3 codebooks: 2 depth heads
    for p in model.parameters():  # larger than the init's std 0.02, so logits are far from ties
        p.data.normal_(0, 0.3)
    return model


def codes(model, text, durations, sampling, seed, window=None, after=None):
    """The codes; `after` (a list) receives the generator's next draw, to compare where it was left."""
    g = torch.Generator().manual_seed(seed)
    gen = TalkerGenerator(model).aligned(text, durations, sampling, generator=g, window=window, chunk_frames=3)
    out = torch.cat(list(gen), 2)
    if after is not None:
        after.append(torch.rand(1, generator=g))
    return out


SAMPLINGS = (SamplingConfig(temperature=0), SamplingConfig(temperature=1.0, top_k=8),
             SamplingConfig(temperature=0.7, top_k=None, top_p=0.8),
             SamplingConfig(temperature=1.3, top_k=3, top_p=0.5))


@pytest.mark.parametrize("window", [None, 5])
def test_onnx_frames_are_the_eager_codes(talker, tmp_path, window, monkeypatch):
    """Greedy, top-k, nucleus and both, one item and a batch of two, with a window shorter than the
    utterance (the ring cache wraps) and without one, the draws made in blocks of 4 frames or in one:
    the codes are the eager sampler's, and the generator is left where the eager loop leaves it."""
    if window:
        monkeypatch.setattr(onnx_talker, "NOISE_BLOCK", 4)  # 15 frames: blocks of 4, 4, 4, 3
    ox = OnnxTalker(talker, cache_dir=tmp_path)
    text = torch.tensor([[3, 9, 27, 4, 60, 2], [5, 8, 13, 21, 34, 0]])
    durations = torch.tensor([[2, 3, 1, 4, 2, 3], [1, 2, 2, 3, 2, 0]])
    with torch.no_grad():
        for sampling in SAMPLINGS:
            for rows in (slice(0, 1), slice(0, 2)):
                left: list[torch.Tensor] = []
                a = codes(talker, text[rows], durations[rows], sampling, 1, window, left)
                b = codes(ox, text[rows], durations[rows], sampling, 1, window, left)
                assert a.shape[-1] == 15 and torch.equal(a, b), sampling
                assert torch.equal(*left)


def test_draw_is_the_eager_sampler():
    """The graph's sampler alone, many rows of random logits (and ties at the k-th without a nucleus):
    the ids `sample_logits` draws from the same generator."""
    from codectts.models.sampling import sample_logits

    torch.manual_seed(0)
    logits = torch.randn(64, 40) * 3
    tied = logits.clone()
    tied[:8, :5] = 2.0  # ties at the top and at the k-th (kept, as the eager top-k keeps them)
    for s, logits in [(s, logits) for s in SAMPLINGS[1:]] + [(SamplingConfig(1.0, top_k=3), tied)]:
        g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
        want = sample_logits(logits, s, g1)
        noise = torch.empty(logits.shape).exponential_(generator=g2)
        rows = logits.shape[0]
        got = onnx_talker.draw(logits, noise, torch.full((rows, 1), s.temperature), torch.full((rows,), s.top_k or 40),
                               torch.full((rows, 1), s.top_p or onnx_talker.NO_NUCLEUS))
        assert torch.equal(want, got), s


def test_non_finite_weights_raise(talker, tmp_path):
    broken = Talker(talker.cfg).eval()
    broken.load_state_dict(talker.state_dict())
    broken.transformer.norm.weight.data[0] = float("nan")
    ox = OnnxTalker(broken, cache_dir=tmp_path)
    with pytest.raises(GenerationError, match="non-finite"):
        codes(ox, torch.tensor([[3, 9]]), torch.tensor([[2, 1]]), SamplingConfig(), 0)


def test_bad_cache_file_is_exported_again_and_good_ones_are_reused(talker, tmp_path, monkeypatch):
    OnnxTalker(talker, cache_dir=tmp_path)
    (graph,) = tmp_path.glob("talker-*.onnx")
    assert graph.name.endswith("-frame.onnx")
    good = graph.read_bytes()
    graph.write_bytes(good[: len(good) // 2])  # a half-written file
    ox = OnnxTalker(talker, cache_dir=tmp_path)
    assert graph.read_bytes() == good
    text, durations = torch.tensor([[3, 9, 27]]), torch.tensor([[2, 3, 1]])
    greedy = SamplingConfig(temperature=0)
    with torch.no_grad():
        assert torch.equal(codes(ox, text, durations, greedy, 0), codes(talker, text, durations, greedy, 0))

    def no_export(*a, **k):
        raise AssertionError("exported although the cache holds the graph")

    monkeypatch.setattr(onnx_talker, "export_frame_graph", no_export)
    OnnxTalker(talker, cache_dir=tmp_path)
    other = Talker(talker.cfg)  # other weights: another file
    with pytest.raises(AssertionError, match="exported"):
        OnnxTalker(other, cache_dir=tmp_path)


def test_refusals(talker, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="aligned"):
        OnnxTalker(Talker(preset("tiny", conditioning="prefix")), cache_dir=tmp_path)
    with pytest.raises(ConfigError, match="float32"):
        OnnxTalker(Talker(preset("tiny")).to(torch.bfloat16), cache_dir=tmp_path)
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ConfigError, match="pip install"):
        OnnxTalker(talker, cache_dir=tmp_path)
    monkeypatch.undo()
    blocker = tmp_path / "file"  # a cache folder that cannot be made
    blocker.write_text("not a folder")
    with pytest.raises(ConfigError, match="CODECTTS_CACHE"):
        OnnxTalker(talker, cache_dir=blocker / "onnx")


def test_int8_quantises_the_transformer_not_the_heads(talker, tmp_path):
    """int8=True (a file of its own) quantises the transformer's weight MatMuls and leaves the codebook
    heads float32; its greedy codes stay close to float32's."""
    import onnx

    fp, q = OnnxTalker(talker, cache_dir=tmp_path), OnnxTalker(talker, cache_dir=tmp_path, int8=True)
    nodes = onnx.load(q.path).graph.node
    assert q.path.name.endswith("-frame-int8.onnx") and fp.path != q.path
    integer = [n.name for n in nodes if n.op_type == "MatMulInteger"]
    assert len(integer) >= 7 * talker.cfg.n_layers and not any("/heads." in n for n in integer)
    assert sum(n.op_type == "MatMul" and "/heads." in n.name for n in nodes) == talker.cfg.n_codebooks
    text = torch.tensor([[3, 9, 27, 4, 60, 2]])
    durations = torch.tensor([[2, 3, 1, 4, 2, 3]])
    greedy = SamplingConfig(temperature=0)
    with torch.no_grad():
        a, b = codes(fp, text, durations, greedy, 0), codes(q, text, durations, greedy, 0)
    assert float((a == b).float().mean()) > 0.6


def test_the_cache_folder_prunes_least_recently_used_graphs(talker, tmp_path):
    import os

    old, used = tmp_path / "talker-a-frame.onnx", tmp_path / "talker-b-frame.onnx"
    for i, p in enumerate((old, used)):
        p.write_bytes(b"x" * 100)
        os.utime(p, (1_000 + i, 1_000 + i))
    other = tmp_path / "notes.txt"  # not a graph: never touched
    other.write_text("keep me")
    ox = OnnxTalker(talker, cache_dir=tmp_path)  # exports one more graph
    onnx_talker.prune(tmp_path, keep=ox.path, limit_bytes=ox.path.stat().st_size + 150)
    assert not old.exists() and used.exists() and ox.path.exists() and other.exists()
    onnx_talker.prune(tmp_path, keep=ox.path, limit_bytes=0)  # the graph in use stays whatever the limit
    assert ox.path.exists() and not used.exists()


def test_exporting_leaves_the_talker_in_eval_mode(talker, tmp_path):
    """torch.onnx.export restores the mode it found; the Talker (whose text encoder stays eager) must come
    back in eval mode, or its dropout would change every conditioning after a fresh export."""
    ox = OnnxTalker(talker, cache_dir=tmp_path)  # exports
    assert not any(m.training for m in ox.talker.modules())

"""The ONNX Runtime decode step (infer/onnx_talker.py) against the eager Talker: the same codes, and a
cache folder that heals itself."""
import sys

import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

from codectts.errors import ConfigError  # noqa: E402
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


def codes(model, text, durations, sampling, seed, window=None):
    g = torch.Generator().manual_seed(seed)
    gen = TalkerGenerator(model).aligned(text, durations, sampling, generator=g, window=window, chunk_frames=3)
    return torch.cat(list(gen), 2)


@pytest.mark.parametrize("window", [None, 5])
def test_onnx_step_gives_the_eager_codes(talker, tmp_path, window):
    """Greedy and sampled, one item and a batch of two, with a window shorter than the utterance
    (the ring cache wraps) and without one."""
    ox = OnnxTalker(talker, cache_dir=tmp_path)
    text = torch.tensor([[3, 9, 27, 4, 60, 2], [5, 8, 13, 21, 34, 0]])
    durations = torch.tensor([[2, 3, 1, 4, 2, 3], [1, 2, 2, 3, 2, 0]])
    with torch.no_grad():
        for sampling in (SamplingConfig(temperature=0), SamplingConfig(temperature=1.0, top_k=8)):
            for rows in (slice(0, 1), slice(0, 2)):
                a = codes(talker, text[rows], durations[rows], sampling, 1, window)
                b = codes(ox, text[rows], durations[rows], sampling, 1, window)
                assert a.shape[-1] == 15 and torch.equal(a, b)


def test_bad_cache_file_is_exported_again_and_good_ones_are_reused(talker, tmp_path, monkeypatch):
    OnnxTalker(talker, cache_dir=tmp_path)
    files = sorted(tmp_path.glob("talker-*.onnx"))
    assert [f.name.rsplit("-", 1)[1] for f in files] == ["depth1.onnx", "depth2.onnx", "step.onnx"]
    step = next(f for f in files if f.name.endswith("step.onnx"))
    good = step.read_bytes()
    step.write_bytes(good[: len(good) // 2])  # a half-written file
    ox = OnnxTalker(talker, cache_dir=tmp_path)
    assert step.read_bytes() == good
    text, durations = torch.tensor([[3, 9, 27]]), torch.tensor([[2, 3, 1]])
    greedy = SamplingConfig(temperature=0)
    with torch.no_grad():
        assert torch.equal(codes(ox, text, durations, greedy, 0), codes(talker, text, durations, greedy, 0))

    def no_export(*a, **k):
        raise AssertionError("exported although the cache holds the graphs")

    monkeypatch.setattr(onnx_talker, "export_graphs", no_export)
    OnnxTalker(talker, cache_dir=tmp_path)
    other = Talker(talker.cfg)  # other weights: other files
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


def test_int8_step_is_close_to_float32(talker, tmp_path):
    """int8=True quantises the step's weight MatMuls (a file of its own); its state stays near the
    float32 step's, and the depth heads are the float32 ones."""
    import numpy as np
    import onnx

    fp, q = OnnxTalker(talker, cache_dir=tmp_path), OnnxTalker(talker, cache_dir=tmp_path, int8=True)
    step8 = next(tmp_path.glob("talker-*-step-int8.onnx"))
    assert {"MatMulInteger", "DynamicQuantizeLinear"} <= {n.op_type for n in onnx.load(step8).graph.node}
    assert len(sorted(tmp_path.glob("talker-*.onnx"))) == 4  # the depth heads are shared
    cond = torch.randn(1, 1, talker.cfg.dim)
    frame = torch.tensor([[1, 2, 3]])
    a_caches, b_caches = fp.make_caches(1, 8), q.make_caches(1, 8)
    for _ in range(4):
        a, b = fp.step(frame, a_caches, cond), q.step(frame, b_caches, cond)
    assert not torch.equal(a, b) and float((a - b).norm() / a.norm()) < 0.06  # 0.022 when written
    assert np.abs(b_caches["k"] - a_caches["k"]).max() < 0.1  # 0.028

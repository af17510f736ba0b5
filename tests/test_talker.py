import json
from pathlib import Path

import pytest
import torch

from codectts.errors import CheckpointError, ConfigError
from codectts.infer.talker import TalkerGenerator
from codectts.models import duration, talker
from codectts.models.duration import DurationConfig, DurationModel, round_durations
from codectts.models.sampling import SamplingConfig
from codectts.models.talker import Talker, TalkerConfig, length_regulate

GREEDY = SamplingConfig(temperature=0)

JOE = Path(talker.__file__).resolve().parents[1] / "voices" / "joe"
TALKER_PARAMS = {"seed": 2_262_720, "tiny": 36_448, "joe": 8_573_696}  # joe: "8.6M" in its voice.json
DURATION_PARAMS = {"base": 1_357_633, "joe": 806_785, "tiny": 11_009}


def expected_seed_params(d=192, layers=4, heads=3, kv=1, ffn=768, k=2, n=128):
    hd = d // heads
    attn = d * heads * hd + 2 * d * kv * hd + heads * hd * d
    block = attn + 3 * d * ffn + 2 * d
    return layers * block + d + k * n * d + k * d * n


def test_seed_preset_parameter_count():
    """Seed 001's architecture (d 192, 4 layers, GQA 3/1, SwiGLU 768, 2 x 128 codes) has 2.26 M parameters.

    The seed's own total (~10.1 M, "transformer layers ~10M") does not follow from the sizes it lists;
    we match the architecture, not that figure (see docs/talker.md).
    """
    m = Talker(talker.preset("seed"))
    assert m.num_params() == expected_seed_params() == 2_262_720
    assert len(m.heads) == 2 and m.heads[0].weight.shape == (128, 192)
    assert m.transformer.layers[0].attn.wk.weight.shape == (64, 192)  # one kv head


@pytest.mark.parametrize("name", sorted(talker.PRESETS))
def test_talker_parameter_count_per_preset(name):
    assert set(TALKER_PARAMS) == set(talker.PRESETS)
    with torch.device("meta"):
        assert Talker(talker.preset(name)).num_params() == TALKER_PARAMS[name]


@pytest.mark.parametrize("name", sorted(duration.PRESETS))
def test_duration_parameter_count_per_preset(name):
    assert set(DURATION_PARAMS) == set(duration.PRESETS)
    with torch.device("meta"):
        assert DurationModel(duration.preset(name)).num_params() == DURATION_PARAMS[name]


def test_joe_presets_are_the_shipped_parts():
    for part, cls, name in [("talker", TalkerConfig, "joe"), ("duration", DurationConfig, "joe")]:
        cfg = json.loads((JOE / part / "config.json").read_text())["config"]
        cfg.pop("length_scale", None)  # fitted by training (calibrate_length), not part of the architecture
        assert cls.from_dict(cfg) == (talker if part == "talker" else duration).preset(name)


def test_save_load_round_trip_and_strict_configs(tmp_path):
    torch.manual_seed(0)
    m = tiny().eval()
    m.save(tmp_path / "t", half=True)
    again = Talker.load(tmp_path / "t")
    assert again.cfg == m.cfg and not again.training
    for (k, a), b in zip(m.state_dict().items(), again.state_dict().values(), strict=True):
        assert torch.equal(a.half().float(), b), k
    with pytest.raises(CheckpointError, match="holds a 'talker', expected a 'duration'"):
        DurationModel.load(tmp_path / "t")
    meta = json.loads((tmp_path / "t" / "config.json").read_text())
    meta["config"]["n_layer"] = 3  # a typo'd field: a ConfigError that names it, not a TypeError traceback
    (tmp_path / "t" / "config.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['n_layer'\]"):
        Talker.load(tmp_path / "t")
    with pytest.raises(ConfigError, match="unknown TalkerConfig preset 'huge'"):
        talker.preset("huge")
    with pytest.raises(ConfigError, match="dimm"):
        duration.preset("tiny", dimm=3)


def test_length_regulation_shapes():
    enc = torch.arange(3 * 2, dtype=torch.float).view(1, 3, 2)
    frames, idx, off, left, mask = length_regulate(enc, torch.tensor([[2, 0, 3]]))
    assert (
        idx.tolist() == [[0, 0, 2, 2, 2]] and off.tolist() == [[0, 1, 0, 1, 2]] and left.tolist() == [[1, 0, 2, 1, 0]]
    )
    assert torch.equal(frames[0, 2], enc[0, 2]) and mask.all()


def tiny(conditioning="aligned", **kw):
    cfg = TalkerConfig(
        dim=48,
        n_layers=2,
        n_heads=2,
        n_kv_heads=1,
        ffn_dim=96,
        n_codebooks=3,
        codebook_size=16,
        conditioning=conditioning,
        text_vocab=20,
        text_layers=1 if conditioning == "aligned" else 0,
        depth_heads=True,
        max_seq_len=256,
        **kw,
    )
    return Talker(cfg)


def test_aligned_overfit_reproduces_codes_and_exact_length():
    torch.manual_seed(0)
    m = tiny()
    codes = torch.randint(0, 16, (1, 3, 14))
    text = torch.tensor([[1, 5, 6, 7, 8, 2]])
    dur = torch.tensor([[1, 3, 2, 4, 3, 1]])
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    first = None
    for _ in range(150):
        loss = m(codes, None, text, torch.tensor([6]), dur).loss
        first = first if first is not None else float(loss.detach())
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert float(loss.detach()) < 0.1 * first
    m.eval()
    out = torch.cat(list(TalkerGenerator(m).aligned(text, dur, GREEDY)), dim=2)
    assert out.shape == (1, 3, 14)  # exactly sum(durations) frames
    assert torch.equal(out, codes)


def test_kv_cached_generation_matches_teacher_forcing():
    torch.manual_seed(0)
    m = tiny().eval()
    text = torch.tensor([[1, 5, 6, 2]])
    dur = torch.tensor([[2, 3, 2, 1]])
    codes = torch.cat(list(TalkerGenerator(m).aligned(text, dur, GREEDY, chunk_frames=3)), dim=2)
    logits = m(codes, None, text, torch.tensor([4]), dur).logits
    assert torch.equal(torch.stack([lg.argmax(-1) for lg in logits], 1), codes)


def test_prefix_mode_learns_to_stop():
    torch.manual_seed(0)
    m = tiny("prefix")
    codes = torch.randint(0, 16, (1, 3, 6))
    text = torch.tensor([[1, 5, 6, 2]])
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    for _ in range(150):
        loss = m(codes, None, text).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    out = torch.cat(list(TalkerGenerator(m).prefix(text, max_frames=40, sampling=GREEDY)), dim=2)
    assert torch.equal(out, codes)  # stopped by itself after 6 frames


def test_streaming_chunks_equal_whole_generation():
    m = tiny().eval()
    text, dur = torch.tensor([[1, 5, 6, 2]]), torch.tensor([[2, 3, 4, 1]])
    s = SamplingConfig(temperature=0.8, top_k=5)
    gen = TalkerGenerator(m)
    a = torch.cat(list(gen.aligned(text, dur, s, generator=torch.Generator().manual_seed(3))), 2)
    b = torch.cat(list(gen.aligned(text, dur, s, chunk_frames=3, generator=torch.Generator().manual_seed(3))), 2)
    assert torch.equal(a, b)


def test_both_loops_run_in_the_model_dtype():
    """One cache dtype rule (the model's) for the aligned and the prefix loop: a bf16 Talker runs either."""
    text, dur = torch.tensor([[1, 5, 6, 2]]), torch.tensor([[2, 1, 2, 1]])
    aligned = TalkerGenerator(tiny().to(torch.bfloat16))
    assert torch.cat(list(aligned.aligned(text, dur, GREEDY)), 2).shape == (1, 3, 6)
    prefix = TalkerGenerator(tiny("prefix").to(torch.bfloat16))
    assert torch.cat(list(prefix.prefix(text, 5, GREEDY)), 2).shape[-1] <= 5


def test_duration_model_rounding_and_speed():
    assert round_durations(torch.tensor([[0.4, 0.4, 0.4, 1.8]])).tolist() == [[0, 1, 0, 2]]
    torch.manual_seed(0)
    m = DurationModel(DurationConfig(text_vocab=20, dim=32, n_layers=1, n_heads=2, ffn_dim=64))
    text = torch.tensor([[1, 5, 6, 7, 2]])
    target = torch.tensor([[2, 4, 6, 3, 1]])
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(200):
        loss = m.loss(text, torch.tensor([5]), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    assert (m.predict(text) - target).abs().max() <= 1
    assert abs(m.n_frames(text, speed=2.0) - 8) <= 1
    with pytest.raises(ConfigError):
        m.predict(text, speed=10)


def test_length_calibration_makes_predicted_totals_match(tmp_path):
    """A model fitted in the log domain on spread-out durations predicts short totals; calibrate_length
    fixes the total exactly (continuous) and the scale survives save/load and scales with speed."""
    torch.manual_seed(0)
    m = DurationModel(duration.preset("tiny"))
    text = torch.tensor([[1, 5, 5, 5, 5, 5, 5, 2]] * 2)
    dur = torch.tensor([[2, 1, 9, 1, 9, 1, 9, 2], [2, 9, 1, 9, 1, 9, 1, 2]])  # same phonemes, spread-out lengths
    lengths = torch.tensor([8, 8])
    opt = torch.optim.Adam(m.parameters(), lr=1e-2)
    for _ in range(150):
        loss = m.loss(text, lengths, dur)
        opt.zero_grad()
        loss.backward()
        opt.step()
    m.eval()
    before = int(m.predict(text, lengths).sum())
    assert before < 0.85 * int(dur.sum())  # the log-domain bias
    scale = m.calibrate_length([(text, lengths, dur)])
    assert scale > 1.15 and m.cfg.length_scale == scale
    assert abs(int(m.predict(text, lengths).sum()) - int(dur.sum())) <= 2
    again = DurationModel.load(m.save(tmp_path / "d")).eval()
    assert again.cfg.length_scale == scale
    assert torch.equal(again.predict(text, lengths), m.predict(text, lengths))
    assert abs(again.n_frames(text[:1], speed=2.0) - int(dur[0].sum()) / 2) <= 2


def test_attention_windows_wider_than_the_input_change_nothing():
    torch.manual_seed(0)
    m = tiny().eval()
    text = torch.tensor([[1, 5, 6, 7, 8, 2]])
    dur = torch.tensor([[1, 3, 2, 4, 3, 1]])
    gen = TalkerGenerator(m)
    full = torch.cat(list(gen.aligned(text, dur, GREEDY)), dim=2)
    wide = torch.cat(list(gen.aligned(text, dur, GREEDY, window=64, text_window=16)), dim=2)
    assert torch.equal(full, wide)
    narrow = torch.cat(list(gen.aligned(text, dur, GREEDY, window=2, text_window=1)), dim=2)
    assert narrow.shape == full.shape  # same length; content may differ

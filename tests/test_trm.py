import math

import pytest
import torch
import torch.nn.functional as F

from codectts.errors import CheckpointError, ConfigError, TextError
from codectts.infer.trm import TRMGenerator, generate
from codectts.models.length import CharRateLength
from codectts.models.sampling import SamplingConfig
from codectts.models.trm import (
    PRESETS,
    TTSTRM,
    TRMConfig,
    codebook_weights,
    preset,
)
from codectts.text import CharTokenizer

K, N = 3, 32


def tiny(**kw) -> TTSTRM:
    torch.manual_seed(0)
    return TTSTRM(preset("tiny", vocab_size=CharTokenizer().vocab_size, n_speakers=2, n_codebooks=K,
                             codebook_size=N, **kw))


def expected_params(c: TRMConfig) -> int:
    """Count from the architecture description, independently of the module code."""
    dt, d, h = c.text_dim, c.dim, c.ffn_dim
    text = (
        c.vocab_size * dt + c.text_layers * (4 * dt * dt + 3 * dt * h + 2 * dt) + dt
    )  # attn, SwiGLU, 2 norms; final norm
    speaker = c.n_speakers * c.speaker_dim + c.speaker_dim * dt
    bridge = 0 if dt == d else dt * d
    init = 2 * d
    block = 3 * 4 * d * d + 3 * d * h + 5 * d  # self-attn + 2 cross-attn, SwiGLU, 5 norms
    updater = 2 * d + 2 * (2 * d) * h + h * d
    heads = (1 if c.share_output_heads else c.n_codebooks) * c.codebook_size * d
    head = d + c.n_codebooks * c.codebook_dim + c.codebook_dim * d + heads
    return text + speaker + bridge + init + c.L_layers * block + updater + head


@pytest.mark.parametrize("name", sorted(PRESETS))
@pytest.mark.parametrize("shared", [False, True])
def test_parameter_count_matches_architecture(name, shared):
    cfg = preset(name, vocab_size=256, n_speakers=11, n_codebooks=32, codebook_size=2048, share_output_heads=shared)
    with torch.device("meta"):
        m = TTSTRM(cfg)
    assert m.num_params() == expected_params(cfg)


def test_seed_preset_sizes():
    """The seed's appendix says ~22M (separate heads) / ~6M (shared); ours: 22.52M / 6.27M."""
    for shared, want in [(False, 22_520_512), (True, 6_267_584)]:
        cfg = preset("seed", vocab_size=256, n_speakers=11, share_output_heads=shared)
        assert expected_params(cfg) == want
    assert preset("seed", vocab_size=256).n_block_calls == 3 * 6 * 2


def test_loss_weights_follow_the_seed():
    w = codebook_weights(32)
    assert w.mean().item() == pytest.approx(1.0)
    raw = w / w[8]  # undo normalisation: codebooks 8.. are 1.0
    assert raw[0].item() == pytest.approx(2.0)
    assert raw[1].item() == pytest.approx(1.5 - 0.5 / 7)
    assert raw[7].item() == pytest.approx(1.0)
    assert torch.all(raw[1:8][:-1] > raw[1:8][1:])
    assert torch.allclose(raw[8:], torch.ones(24))
    small = codebook_weights(2)  # any K: [2.0, 1.5 - 0.5/7] normalised
    assert small.mean().item() == pytest.approx(1.0)
    assert (small[0] / small[1]).item() == pytest.approx(2.0 / (1.5 - 0.5 / 7))
    assert codebook_weights(1).tolist() == [1.0]


def batch(m: TTSTRM, lengths=((12, 20), (7, 11))):
    torch.manual_seed(1)
    b = len(lengths)
    s, f = max(t for t, _ in lengths), max(n for _, n in lengths)
    ids = torch.zeros(b, s, dtype=torch.long)
    for i, (t, _) in enumerate(lengths):
        ids[i, :t] = torch.randint(3, m.cfg.vocab_size, (t,))
    targets = torch.randint(0, N, (b, K, f))
    return (
        ids,
        torch.tensor([t for t, _ in lengths]),
        torch.arange(b) % 2,
        torch.tensor([n for _, n in lengths]),
        targets,
    )


def test_shapes_and_loss_at_init():
    m = tiny()
    ids, tl, spk, fl, tgt = batch(m)
    out = m(ids, tl, spk, fl, tgt)
    assert out.logits.shape == (2, K, 20, N)
    assert out.codebook_loss.shape == (K,) and out.codebook_accuracy.shape == (K,)
    assert out.loss.dim() == 0
    assert abs(out.loss.item() - math.log(N)) < 0.3  # near uniform at init
    assert m(ids, tl, spk, fl).loss is None


def test_padding_does_not_change_valid_frames():
    """An item padded into a batch gets the same logits on its valid frames as alone."""
    m = tiny().eval()
    ids, tl, spk, fl, _ = batch(m)
    full = m(ids, tl, spk, fl).logits
    alone = m(ids[1:, :7], tl[1:], spk[1:], fl[1:]).logits
    assert torch.allclose(full[1, :, :11], alone[0], atol=1e-5)


def test_loss_ignores_padded_frames_but_counts_code_zero():
    m = tiny().eval()
    ids, tl, spk, fl, tgt = batch(m)
    base = m(ids, tl, spk, fl, tgt).loss
    other = tgt.clone()
    other[1, :, 11:] = (other[1, :, 11:] + 5) % N  # change only padded frames of item 1
    assert torch.allclose(m(ids, tl, spk, fl, other).loss, base)
    zeros = tgt.clone()
    zeros[0, :, :5] = 0  # code 0 is a real code: changing frames to 0 must change the loss
    assert not torch.allclose(m(ids, tl, spk, fl, zeros).loss, base)


def test_bad_inputs_are_clear_errors():
    m = tiny()
    ids, tl, spk, fl, tgt = batch(m)
    with pytest.raises(ConfigError, match="speaker"):
        m(ids, tl, torch.tensor([0, 5]), fl)
    with pytest.raises(ConfigError, match="max_frames"):
        m(ids, tl, spk, torch.tensor([m.cfg.max_frames + 1, 3]))
    with pytest.raises(ConfigError, match="targets"):
        m(ids, tl, spk, fl, tgt[:, :2])
    with pytest.raises(ConfigError):
        preset("tiny", grad_cycles=5)
    with pytest.raises(ConfigError, match="unknown TRMConfig preset"):
        preset("huge")
    with pytest.raises(ConfigError, match="unknown field"):
        TRMConfig.from_dict({"dimm": 3})


def test_grad_cycles_changes_backward_not_forward():
    torch.manual_seed(0)
    full = tiny()
    last = tiny(grad_cycles=1)
    last.load_state_dict(full.state_dict())
    ids, tl, spk, fl, tgt = batch(full)
    a, b = full(ids, tl, spk, fl, tgt), last(ids, tl, spk, fl, tgt)
    assert torch.allclose(a.loss, b.loss)
    a.loss.backward()
    b.loss.backward()
    # init_z feeds only the first cycle's z: with grad through the last cycle only it gets none
    assert full.init_z.grad is not None and full.init_z.grad.abs().sum() > 0
    assert last.init_z.grad is None or last.init_z.grad.abs().sum() == 0
    assert last.out_weight.grad.abs().sum() > 0


def test_overfits_one_item_and_generation_reproduces_it():
    """Loss falls on a tiny fixture; greedy generation then returns the memorised codes."""
    m = tiny()
    tok = CharTokenizer()
    text = "hello world"
    ids = torch.tensor([tok.encode(text)])
    torch.manual_seed(3)
    target = torch.randint(0, N, (1, K, 16))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2, weight_decay=0.0)
    args = (ids, torch.tensor([ids.shape[1]]), torch.tensor([1]), torch.tensor([16]), target)
    first = m(*args).loss.item()
    for _ in range(150):
        out = m(*args)
        opt.zero_grad()
        out.loss.backward()
        opt.step()
    assert out.loss.item() < 0.1 * first
    codes = generate(m, text, speaker=1, n_frames=16, tokenizer=tok, sampling=SamplingConfig(temperature=0))
    assert codes.shape == (K, 16)
    assert (codes == target[0]).float().mean() > 0.95


def test_generate_exact_length_determinism_and_length_source():
    m = tiny()
    tok = CharTokenizer()
    for n in (1, 5, 37):
        assert generate(m, "hi there", n_frames=n, tokenizer=tok).shape == (K, n)
    a = generate(m, "hi there", n_frames=9, tokenizer=tok, seed=4)
    b = generate(m, "hi there", n_frames=9, tokenizer=tok, seed=4)
    assert torch.equal(a, b) and a.dtype == torch.long and 0 <= a.min() and a.max() < N
    src = CharRateLength(frame_rate=12.5)
    assert generate(m, "hi there", length_source=src, tokenizer=tok).shape == (K, src.n_frames("hi there"))
    assert generate(m, "hi there", length_source=src, tokenizer=tok, speed=2.0).shape[1] == src.n_frames(
        "hi there", 2.0
    )
    with pytest.raises(ConfigError, match="exactly one"):
        generate(m, "hi", tokenizer=tok)
    with pytest.raises(ConfigError, match="speed"):
        generate(m, "hi", length_source=src, tokenizer=tok, speed=10.0)
    with pytest.raises(TextError):
        generate(m, "...", n_frames=4, tokenizer=tok)
    assert m.training  # generate restores the mode it found


def test_save_load_round_trip(tmp_path):
    m = tiny(share_output_heads=True).eval()
    tok = CharTokenizer()
    src = CharRateLength(frame_rate=20.0, seconds_per_char=0.07)
    m.save(tmp_path / "part", extra={"tokenizer": tok.to_dict(), "length": src.to_dict(), "speakers": ["joe", "ann"]})
    again = TTSTRM.load(tmp_path / "part")
    ids, tl, spk, fl, _ = batch(m)
    assert torch.equal(m(ids, tl, spk, fl).logits, again(ids, tl, spk, fl).logits)
    pipe = TRMGenerator.load(tmp_path / "part")
    assert pipe.speaker_id("ann") == 1 and pipe.speaker_id(None) == 0
    codes = pipe.generate("hello there", speaker="ann", seed=0)
    assert codes.shape == (K, src.n_frames("hello there"))
    assert torch.equal(codes, generate(m, "hello there", 1, length_source=src, tokenizer=tok, seed=0))
    with pytest.raises(ConfigError, match="unknown speaker"):
        pipe.speaker_id("bob")
    with pytest.raises(CheckpointError, match="holds"):
        from codectts.parts import save_part

        save_part(tmp_path / "other", m.state_dict(), m.cfg, "talker")
        TTSTRM.load(tmp_path / "other")


def test_positions_from_durations():
    from codectts.models.trm import positions_from_durations, uniform_positions

    pos = positions_from_durations([2, 0, 1, 4])
    assert pos.shape == (7,)
    assert pos.round().long().tolist() == [0, 0, 2, 3, 3, 3, 3]  # each frame on its token; 0-frame token skipped
    assert torch.allclose(pos[:2], torch.tensor([-0.25, 0.25]))  # spread across the token, centred on it
    assert torch.all(pos[1:] > pos[:-1])
    # equal durations = the uniform reading rate
    assert torch.allclose(
        positions_from_durations([3] * 5), uniform_positions(torch.tensor([5]), torch.tensor([15]), 15)[0]
    )
    with pytest.raises(ConfigError):
        positions_from_durations([0, 0])
    with pytest.raises(ConfigError):
        positions_from_durations([2, -1])


def test_generate_with_durations():
    m = tiny(alignment="durations")
    tok = CharTokenizer()
    ids = tok.encode("hi there")
    durs = [1] * len(ids)
    durs[3] = 5
    codes = generate(m, ids, durations=durs, seed=0)
    assert codes.shape == (K, sum(durs))
    with pytest.raises(ConfigError, match="durations for"):
        generate(m, ids, durations=durs[:-1])
    with pytest.raises(ConfigError, match="exactly one"):
        generate(m, ids, n_frames=4, durations=durs)
    # the positions matter: same length, other placement, other logits
    from codectts.models.trm import positions_from_durations

    args = (torch.tensor([ids]), torch.tensor([len(ids)]), torch.tensor([0]), torch.tensor([sum(durs)]))
    a = m.eval()(*args, frame_positions=positions_from_durations(durs)[None]).logits
    b = m(*args).logits
    assert not torch.allclose(a, b)
    with pytest.raises(ConfigError, match="frame_positions"):
        m(*args, frame_positions=torch.zeros(1, 3))


def test_latent_error_is_what_soft_decoding_plays():
    """latent_error: 0 for certain right codes, the squared distance of ResidualVQ.decode_soft's latent from
    the true codes' latent otherwise, padded frames ignored."""
    from codectts.codecs.rvq import ResidualVQ
    from codectts.models.trm import latent_error

    torch.manual_seed(0)
    rvq = ResidualVQ(n_codebooks=K, codebook_size=N, dim=6)
    codes = torch.randint(0, N, (2, K, 9))
    fl = torch.tensor([9, 5])
    sure = F.one_hot(codes, N).float() * 50.0
    assert latent_error(sure, codes, fl, rvq) < 1e-8
    logits = torch.randn(2, K, 9, N)
    soft = rvq.decode_soft(logits.softmax(-1))  # [B, F, D]
    want = torch.cat([((soft[0] - rvq.decode(codes)[0]) ** 2).mean(-1),
                      ((soft[1, :5] - rvq.decode(codes)[1, :5]) ** 2).mean(-1)]).mean()
    got = latent_error(logits, codes, fl, rvq)
    assert torch.allclose(got, want, atol=1e-6)
    changed = codes.clone()
    changed[1, :, 5:] = (changed[1, :, 5:] + 1) % N  # padded frames of item 1
    assert torch.allclose(latent_error(logits, changed, fl, rvq), got)
    with pytest.raises(ConfigError):
        latent_error(logits, codes, fl, ResidualVQ(n_codebooks=K, codebook_size=3, dim=6))

"""CSM / Marvis: sizes, layout, cache decoding == full forward, EOS, voice cloning, save/load."""
import random

import pytest
import torch

from codectts.errors import CheckpointError, ConfigError, DataError, TextError
from codectts.infer.csm import CSMGenerator, Reference
from codectts.models.csm import (
    CSM,
    PRESETS,
    CSMConfig,
    Segment,
    build_sequence,
    collate,
    preset,
)
from codectts.models.sampling import SamplingConfig
from codectts.text.tokenizers import CharTokenizer

K, N = 4, 32  # synthetic codes: 4 codebooks of 32
LETTERS = "abcdefgh"
TOK = CharTokenizer()
GREEDY = SamplingConfig(temperature=0)


def stack_params(dim: int, layers: int, heads: int, kv_heads: int, ffn: int) -> int:
    """Llama block stack: q,o (d x d) + k,v (d x kv_dim) + SwiGLU (3 d ffn) + 2 norms per layer, final norm."""
    kv_dim = dim // heads * kv_heads
    return layers * (2 * dim * dim + 2 * dim * kv_dim + 3 * dim * ffn + 2 * dim) + dim


def expected_counts(cfg: CSMConfig) -> dict[str, int]:
    v = cfg.codebook_size + 1
    return {"backbone": stack_params(cfg.dim, cfg.n_layers, cfg.n_heads, cfg.n_kv_heads, cfg.ffn_dim),
            "decoder": stack_params(cfg.decoder_dim, cfg.decoder_layers, cfg.decoder_heads, cfg.decoder_kv_heads,
                                    cfg.decoder_ffn_dim),
            "embeddings": cfg.text_vocab_size * cfg.dim + cfg.n_codebooks * v * cfg.dim,
            "heads": cfg.dim * v + (cfg.n_codebooks - 1) * cfg.decoder_dim * cfg.codebook_size
            + cfg.dim * cfg.decoder_dim}


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_param_counts(name):
    cfg = preset(name, text_vocab_size=TOK.vocab_size,
                     **({} if name == "marvis" else {"n_codebooks": 8, "codebook_size": 1024}))
    with torch.device("meta"):  # the 0.5 B-parameter marvis preset costs no memory here
        counts = CSM(cfg).param_counts()
    want = expected_counts(cfg)
    assert {k: counts[k] for k in want} == want
    assert counts["total"] == sum(want.values())


def test_marvis_is_the_seed_size():
    """Seed 004: 'Llama 250M backbone + 60M decoder' over Mimi 32 x 2048 (the transformer stacks)."""
    cfg = preset("marvis", text_vocab_size=TOK.vocab_size)
    assert (cfg.n_codebooks, cfg.codebook_size) == (32, 2048)
    with torch.device("meta"):
        counts = CSM(cfg).param_counts()
    assert counts["backbone"] == 261_901_824 and counts["decoder"] == 60_826_624
    assert 250e6 <= counts["backbone"] < 270e6 and 60e6 <= counts["decoder"] < 62e6


def test_bad_configs():
    with pytest.raises(ConfigError, match="2 codebooks"):
        CSMConfig(n_codebooks=1)
    with pytest.raises(ConfigError, match="divisible"):
        CSMConfig(dim=100, n_heads=3)
    with pytest.raises(ConfigError, match="unknown CSMConfig preset"):
        preset("huge")
    with pytest.raises(ConfigError, match=r"unknown field\(s\) \['n_embd'\]"):
        CSMConfig.from_dict({"dim": 64, "n_embd": 3})
    with pytest.raises(ConfigError, match="n_embd"):
        preset("tiny", n_embd=3)


# ---- synthetic data: each letter is two frames whose codes depend on the letter and the speaker ----------
def codes_for(text: str, speaker: int) -> torch.Tensor:
    """[K, 2 * len(text)]; speaker 0 uses codes 0..15, speaker 1 codes 16..31."""
    cols = []
    for ch in text:
        c = LETTERS.index(ch)
        for j in range(2):
            cols.append([(3 * c + 5 * j * (k + 1) + k) % (N // 2) + speaker * (N // 2) for k in range(K)])
    return torch.tensor(cols, dtype=torch.long).T


def random_text(rng: random.Random) -> str:
    return "".join(rng.choice(LETTERS) for _ in range(rng.randint(2, 5)))


def synthetic_sequence(rng: random.Random, context_prob: float = 0.5):
    speaker = rng.randint(0, 1)
    segs = []
    if rng.random() < context_prob:
        t = random_text(rng)
        segs.append(Segment(TOK.encode(t), codes_for(t, speaker)))
    t = random_text(rng)
    segs.append(Segment(TOK.encode(t), codes_for(t, speaker)))
    return build_sequence(segs, K, N)


def tiny_config(**kw) -> CSMConfig:
    return preset("tiny", **{"text_vocab_size": TOK.vocab_size, "n_codebooks": K, "codebook_size": N, **kw})


def test_sequence_layout():
    text, audio, mask = build_sequence([Segment([1, 5, 2], codes_for("ab", 0)), Segment([1, 6, 2])], K, N)
    assert text.shape == (3 + 4 + 1 + 3,) and audio.shape == (11, K) and mask.shape == (11,)
    assert mask.tolist() == [False] * 3 + [True] * 5 + [False] * 3
    assert torch.equal(audio[3:7].T, codes_for("ab", 0)) and (audio[7] == N).all()  # the EOS frame
    assert (text[3:8] == 0).all() and text[8:].tolist() == [1, 6, 2]
    with pytest.raises(ConfigError, match="out of range"):
        build_sequence([Segment([1, 2], torch.full((K, 2), N))], K, N)
    with pytest.raises(ConfigError):
        build_sequence([Segment([1, 2], torch.zeros(K - 1, 2, dtype=torch.long))], K, N)


def test_forward_shapes_and_decoder_fraction():
    torch.manual_seed(0)
    model = CSM(tiny_config())
    rng = random.Random(0)
    batch = collate([synthetic_sequence(rng, context_prob=0.0) for _ in range(3)])
    n_frames = int(batch[2][:, 1:].sum())
    out = model(*batch)
    assert out.c0_logits.shape == (n_frames, N + 1) and out.c0_targets.shape == (n_frames,)
    n_real = n_frames - 3  # one EOS frame per item: no decoder targets
    assert out.decoder_logits.shape == (n_real, K - 1, N) and len(out.accuracy) == K
    assert torch.isfinite(out.loss) and torch.allclose(out.loss, out.backbone_loss + out.decoder_loss)
    part = model(*batch, decoder_fraction=0.25, generator=torch.Generator().manual_seed(0))
    assert part.decoder_logits.shape[0] == -(-n_real // 4)
    assert torch.allclose(part.backbone_loss, out.backbone_loss)  # the backbone always sees every frame
    with pytest.raises(DataError, match="codebooks"):
        model(batch[0], batch[1][..., :2], batch[2])


def test_cached_generation_equals_full_forward():
    """Prefill + one-frame steps + per-frame decoder caches give the full forward's logits."""
    torch.manual_seed(0)
    model = CSM(tiny_config()).eval()
    ref, target = codes_for("cab", 1), codes_for("hd", 1)
    text, audio, mask = build_sequence([Segment(TOK.encode("cab"), ref), Segment(TOK.encode("hd"), target)], K, N)
    with torch.no_grad():
        full = model(text[None], audio[None], mask[None])
        n_prompt = int((~mask).nonzero()[-1]) + 1  # up to the last text token
        caches, dec_caches = model.make_caches(1, max_len=64)
        h = model.prefill(text[None, :n_prompt], audio[None, :n_prompt], mask[None, :n_prompt], caches)
        c0_logits, dec_logits = [], []
        frames = torch.cat([target, torch.full((K, 1), N)], dim=1).T  # [F + 1, K], EOS last
        for f, frame in enumerate(frames):
            out = model.generate_frame(h, dec_caches, sample=None, forced=frame[None])
            c0_logits.append(out.c0_logits[0])
            if f < len(target.T):
                dec_logits.append(out.logits[0])
                h = model.step(frame[None], caches)
    n_target = frames.shape[0]
    assert torch.allclose(torch.stack(c0_logits), full.c0_logits[-n_target:], atol=1e-4)
    assert torch.allclose(torch.stack(dec_logits), full.decoder_logits[-(n_target - 1):], atol=1e-4)


def test_untrained_model_runs_to_max_frames():
    torch.manual_seed(0)
    model = CSM(tiny_config())
    with torch.no_grad():  # make EOS impossible: the generator must stop at max_frames and say so
        model.c0_head.weight[N] = 0
        model.c0_head.weight[:N] += model.c0_head.weight[:N].sign() * 10
    res = CSMGenerator(model, None, TOK).generate("abc", max_frames=7, seed=0)
    assert res.codes.shape == (K, 7) and not res.stopped and res.wav is None
    with pytest.raises(TextError, match="max_seq_len"):
        CSMGenerator(model, None, TOK).generate("abc", reference=(torch.zeros(K, 600, dtype=torch.long), "abc"))


# ---- a tiny model trained on the synthetic task (shared by the behaviour tests) ------------------------
TRAIN_STEPS = 250


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    rng = random.Random(0)
    model = CSM(tiny_config())
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(TRAIN_STEPS):
        out = model(*collate([synthetic_sequence(rng) for _ in range(16)]))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    return model.eval(), losses, out


@pytest.mark.slow
def test_loss_decreases(trained):
    _, losses, last = trained
    first, final = sum(losses[:10]) / 10, sum(losses[-10:]) / 10
    assert final < 0.1 * first, (first, final)
    assert min(last.accuracy[1:]) > 0.95  # the depth decoder has learnt codebooks 1..K-1


@pytest.mark.slow
def test_generation_stops_on_eos(trained):
    model, _, _ = trained
    gen = CSMGenerator(model, None, TOK)
    res = gen.generate("hgd", reference=(codes_for("abc", 0), "abc"), sampling=GREEDY)
    assert res.stopped and res.codes.shape == (K, 6)  # two frames per letter, then the EOS frame
    longer = gen.generate("hgd", reference=(codes_for("abc", 0), "abc"), sampling=GREEDY, min_frames=8, max_frames=9)
    assert longer.codes.shape[1] >= 8  # EOS is suppressed before min_frames


@pytest.mark.slow
def test_cloning_follows_the_reference_voice(trained):
    """The synthetic speaker is only visible in the reference's codes: the continuation must take it."""
    model, _, _ = trained
    gen = CSMGenerator(model, None, TOK)
    outs = {}
    for speaker in (0, 1):
        ref = Reference(codes_for("fed", speaker), "fed")
        outs[speaker] = gen.generate("bag", reference=ref, sampling=GREEDY).codes
        half = outs[speaker] // (N // 2)  # which speaker's code range each generated code lies in
        assert outs[speaker].shape == (K, 6) and (half == speaker).all(), outs[speaker]
    assert not torch.equal(outs[0], outs[1])


def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = CSM(tiny_config()).eval()
    model.save(tmp_path / "csm", extra={"tokenizer": TOK.to_dict()})
    loaded = CSM.load(tmp_path / "csm")
    assert loaded.cfg == tiny_config()
    batch = collate([synthetic_sequence(random.Random(1))])
    with torch.no_grad():
        assert torch.equal(model(*batch).c0_logits, loaded(*batch).c0_logits)
    a = CSMGenerator(model, None, TOK).generate("cab", max_frames=5, seed=3)
    b = CSMGenerator.load(tmp_path / "csm").generate("cab", max_frames=5, seed=3)
    assert torch.equal(a.codes, b.codes)
    (tmp_path / "other").mkdir()
    CSM(tiny_config(dim=32, n_heads=2)).save(tmp_path / "other")
    sd_other = tmp_path / "other" / "model.safetensors"
    (tmp_path / "csm" / "model.safetensors").write_bytes(sd_other.read_bytes())
    with pytest.raises(CheckpointError, match="do not match"):
        CSM.load(tmp_path / "csm")


def test_generator_checks_its_parts():
    model = CSM(tiny_config(text_vocab_size=10))

    class FakeCodec:  # only the attributes the check reads
        n_codebooks, codebook_size, sample_rate = K + 1, N, 24_000

    with pytest.raises(ConfigError, match="tokenizer"):
        CSMGenerator(model, None, TOK)
    with pytest.raises(ConfigError, match="codec"):
        CSMGenerator(CSM(tiny_config()), FakeCodec(), TOK)

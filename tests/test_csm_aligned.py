"""The CSM's aligned mode: frames told their phoneme by durations (model, generation, recipe, voice)."""
import json
import random

import numpy as np
import pytest
import torch

from codectts.errors import ConfigError
from codectts.infer.csm import CSMGenerator
from codectts.models.csm import CSM, preset
from codectts.train.csm import collate_aligned

K, N, VOCAB = 3, 24, 12


class DigitTokenizer:
    """Text '3 5 7' -> ids [3, 5, 7]: phoneme ids written out, so a test controls them exactly."""

    kind = "phoneme"
    vocab_size = VOCAB

    def encode(self, text: str) -> list[int]:
        return [int(x) for x in text.split()]


class FixedDurations:
    """A length source that plans `d` frames for every phoneme (stands in for a duration model)."""

    def __init__(self, d: int):
        self.d = d

    def frame_durations(self, text: str, speed: float = 1.0) -> list[int]:
        return [max(1, round(self.d / speed))] * len(text.split())


def phoneme_codes(ids: list[int], durations: list[int]) -> torch.Tensor:
    """[K, F]: each frame's codes set by its phoneme, its offset inside it and the codebook."""
    cols = [[(5 * p + 2 * o + k) % N for k in range(K)] for p, d in zip(ids, durations, strict=True)
            for o in range(d)]
    return torch.tensor(cols).T


def random_item(rng: random.Random):
    ids = [rng.randrange(3, VOCAB) for _ in range(rng.randint(2, 5))]
    durations = [rng.randint(1, 4) for _ in ids]
    return phoneme_codes(ids, durations), ids, durations


def aligned_model(**kw) -> CSM:
    return CSM(preset("tiny", text_vocab_size=VOCAB, n_codebooks=K, codebook_size=N, conditioning="aligned",
                      text_layers=1, **kw))


def test_config_and_mode_checks():
    with pytest.raises(ConfigError, match="conditioning"):
        preset("tiny", conditioning="sideways")
    with pytest.raises(ConfigError, match="text_layers"):
        preset("tiny", conditioning="aligned", text_layers=0)
    model = aligned_model()
    assert "text_encoder" in model.param_counts()
    with pytest.raises(ConfigError, match="forward_aligned"):
        model.forward_interleaved(torch.zeros(1, 3, dtype=torch.long), torch.zeros(1, 3, K, dtype=torch.long),
                                  torch.zeros(1, 3, dtype=torch.bool))
    with pytest.raises(ConfigError, match="duration model"):
        CSMGenerator(model, None, DigitTokenizer())  # no length source: nothing plans the frames


def test_padding_and_cached_steps_equal_the_full_forward():
    """An item's loss terms do not depend on the batch's padding, and frame-by-frame generation with
    caches, teacher-forced, gives the full forward's codebook-0 logits."""
    torch.manual_seed(0)
    model = aligned_model().eval()
    rng = random.Random(1)
    items = [random_item(rng) for _ in range(3)]
    with torch.no_grad():
        batch = model(*collate_aligned(items))
        alone = model(*collate_aligned(items[1:2]))
        n0 = items[0][0].shape[1]
        n1 = items[1][0].shape[1]
        assert torch.allclose(batch.c0_logits[n0:n0 + n1], alone.c0_logits, atol=1e-5)
        codes, ids, d = items[1]
        cond = model.frame_conditioning(torch.tensor([ids]), torch.tensor([len(ids)]), torch.tensor([d]))
        caches, dec = model.make_caches(1, max_len=n1)
        frame, steps = model.start_frame(1), []
        for t in range(n1):
            h = model.step(frame, caches, cond[:, t])
            steps.append(model.generate_frame(h, dec, sample=None, forced=codes[:, t][None]).c0_logits[0])
            frame = codes[:, t][None]
    assert torch.allclose(torch.stack(steps), alone.c0_logits, atol=1e-4)


@pytest.fixture(scope="module")
def trained():
    torch.manual_seed(0)
    rng = random.Random(0)
    model = aligned_model()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(200):
        out = model(*collate_aligned([random_item(rng) for _ in range(16)]))
        opt.zero_grad()
        out.loss.backward()
        opt.step()
        losses.append(float(out.loss.detach()))
    return model.eval(), losses


def test_aligned_model_reads_its_phonemes(trained):
    """Trained on codes set by phoneme and offset, greedy generation makes the codes of unseen phoneme
    strings, exactly as long as their durations."""
    model, losses = trained
    assert np.mean(losses[-10:]) < 0.1 * np.mean(losses[:10])
    gen = CSMGenerator(model, None, DigitTokenizer(), FixedDurations(2))
    rng = random.Random(7)
    right = 0
    for _ in range(5):
        ids = [rng.randrange(3, VOCAB) for _ in range(4)]
        res = gen.generate(" ".join(map(str, ids)), sampling=None, seed=0)
        want = phoneme_codes(ids, [2] * 4)
        assert res.codes.shape == want.shape and res.stopped
        right += int(torch.equal(res.codes, want))
    assert right >= 4, right
    slow = gen.generate("3 4 5", seed=0, speed=0.5)  # the duration plan sets the length
    assert slow.codes.shape[1] == 12
    with pytest.raises(ConfigError, match="no reference"):
        gen.generate("3 4", reference=(torch.zeros(K, 4, dtype=torch.long), "x"))
    with pytest.raises(ConfigError, match="durations for"):
        gen.generate("3 4", durations=[1, 2, 3])


def write_aligned_cache(tmp_path, speakers=("0",)):
    """A mel codec, a code cache with teacher durations (speakers in turn) and a tiny duration part."""
    from codectts.audio import mel_preset
    from codectts.codecs.mel_rvq import MelRVQCodec, MelRVQConfig
    from codectts.data.codecache import CacheEntry, write_cache_meta, write_codes, write_index
    from codectts.models.duration import DurationModel
    from codectts.models.duration import preset as dur_preset
    from codectts.text import PhonemeTokenizer

    codec_cfg = MelRVQConfig(mel=mel_preset("vocoder"), stack=4, n_codebooks=K, codebook_size=N, codebook_dim=8)
    codec = MelRVQCodec(codec_cfg)
    codec.save(tmp_path / "codec")
    tok = PhonemeTokenizer()
    root = tmp_path / "codes"
    write_cache_meta(root, {"type": "mel_rvq", "path": str(tmp_path / "codec")}, K, N,
                     frame_rate=codec.frame_rate, sample_rate=codec.sample_rate, source="test")
    rng = np.random.default_rng(0)
    for split, texts in (("train", ["the cat sat", "a dog ran home", "birds sing", "rain falls"]),
                         ("dev", ["the sun is warm", "wind blows"])):
        entries = []
        for i, text in enumerate(texts):
            phonemes = ["^", *tok.units(text), "$"]
            durs = rng.integers(1, 4, size=len(phonemes)).tolist()
            codes = rng.integers(0, N, size=(K, sum(durs)))
            uid = f"{split}{i}"
            entries.append(CacheEntry(id=uid, text=text, n_frames=sum(durs), speaker=speakers[i % len(speakers)],
                                      phonemes=phonemes, durations=durs, file=write_codes(root, uid, codes, N)))
        write_index(root, entries, split)
    dur = DurationModel(dur_preset("tiny", text_vocab=tok.vocab_size, frame_rate=codec.frame_rate))
    dur.save(tmp_path / "duration")
    return codec, root


def tiny_train_config(out, steps: int = 3):
    from codectts.train.loop import TrainConfig

    return TrainConfig(out_dir=str(out), lr=1e-3, warmup_steps=1, max_steps=steps, log_every=1, eval_every=steps,
                       save_every=steps, tensorboard=False, progress=False)


def test_recipe_trains_exports_and_speaks_as_a_voice(tmp_path):
    """`train csm --conditioning aligned` on a cache with teacher durations: the part carries its duration
    model; make-voice over the mel codec builds a voice that speaks at the duration model's length."""
    import soundfile as sf

    from codectts.infer.packaging import build_voice
    from codectts.infer.synthesizer import Synthesizer
    from codectts.train.csm import CSMRunConfig, train_csm

    codec, root = write_aligned_cache(tmp_path)
    out = tmp_path / "run"
    tcfg = tiny_train_config(out)
    with pytest.raises(ConfigError, match="--length-model"):
        train_csm(CSMRunConfig(codes=str(root), preset="tiny", tokenizer="phoneme", conditioning="aligned"), tcfg)
    with pytest.raises(ConfigError, match="--tokenizer phoneme"):
        CSMRunConfig(codes=str(root), conditioning="aligned")
    rc = CSMRunConfig(codes=str(root), preset="tiny", tokenizer="phoneme", conditioning="aligned",
                      length_model=str(tmp_path / "duration"), max_tokens=400)
    result = train_csm(rc, tcfg)
    assert result["step"] == 3 and np.isfinite(result["dev_loss"])
    meta = json.loads((out / "best" / "config.json").read_text())
    assert meta["config"]["conditioning"] == "aligned" and meta["length"]["path"] == "length_model"
    assert (out / "best" / "length_model" / "model.safetensors").exists()
    voice = build_voice(tmp_path / "voice", name="csm-aligned", codec=tmp_path / "codec", csm=out / "best")
    synth = Synthesizer.load(voice)
    gen = synth.engine.generator
    text = "the cat sat"
    n = sum(gen.plan_durations(text))
    wav, sr = synth.synthesize(text, seed=0)
    assert sr == codec.sample_rate and len(wav) == n * codec.cfg.samples_per_frame
    assert len(synth.synthesize(text, seed=0, speed=0.5)[0]) > len(wav)
    sf.write(tmp_path / "say.wav", wav, sr)
    with pytest.raises(ConfigError, match="only interleaved csm voices"):
        synth.reference(tmp_path / "say.wav", "the cat sat")
    other = build_voice(tmp_path / "voice3", name="x", codec=tmp_path / "codec", csm=out / "best",
                        duration=tmp_path / "duration")  # a duration part replaces the part's own
    assert (other / "csm" / "length_model" / "model.safetensors").exists()
    with pytest.raises(ConfigError, match="reference"):
        build_voice(tmp_path / "voice2", name="x", codec=tmp_path / "codec", csm=out / "best",
                    reference=tmp_path / "say.wav", reference_text="hi")


def test_speaker_vectors_condition_every_frame():
    torch.manual_seed(0)
    with pytest.raises(ConfigError, match="aligned"):
        preset("tiny", speaker_vector_dim=4)
    model = aligned_model(speaker_vector_dim=4).eval()
    codes, ids, durations = random_item(random.Random(1))
    batch = collate_aligned([(codes, ids, durations, np.array([1.0, 0, 0, 0], np.float32))])
    assert batch[-1].shape == (1, 4)
    with torch.no_grad():
        model.speaker_vector_proj.weight.mul_(50)
        a = model(*batch).loss
        b = model(*batch[:-1], torch.tensor([[0.0, 3.0, 0, 0]])).loss
        scaled = model(*batch[:-1], torch.tensor([[7.0, 0, 0, 0]])).loss  # the vector's direction counts
    assert not torch.equal(a, b) and torch.allclose(a, scaled)
    with pytest.raises(ConfigError, match="speaker_vector"):
        model(*batch[:-1])
    with pytest.raises(ConfigError, match="without speaker vectors"):
        aligned_model()(*batch)


def test_a_speaker_vector_csm_fine_tunes_a_single_speaker_part_and_clones(tmp_path, monkeypatch):
    """`train csm --speaker-vectors --init-from PART`: every weight of the single-speaker part is copied but
    the new speaker projection; the part names its speakers' mean vectors; its voice clones a clip
    (`Synthesizer.reference`), and speaks as its first training speaker without one."""
    import soundfile as sf

    import codectts.eval.speaker as speaker
    from codectts.data.speaker_vectors import vector_path
    from codectts.infer.packaging import build_voice
    from codectts.infer.speakers import SpeakerReference
    from codectts.infer.synthesizer import Synthesizer
    from codectts.train.csm import CSMRunConfig, train_csm

    codec, root = write_aligned_cache(tmp_path, speakers=("ann", "bob"))
    common = dict(codes=str(root), preset="tiny", tokenizer="phoneme", conditioning="aligned",
                  length_model=str(tmp_path / "duration"), max_tokens=400)
    train_csm(CSMRunConfig(**common), tiny_train_config(tmp_path / "single"))
    with pytest.raises(ConfigError, match="--conditioning aligned"):
        CSMRunConfig(codes=str(root), speaker_vectors=True)
    from codectts.errors import DataError

    with pytest.raises(DataError, match="speaker-vectors"):
        train_csm(CSMRunConfig(**common, speaker_vectors=True), tiny_train_config(tmp_path / "none"))
    for split, n in (("train", 4), ("dev", 2)):
        for i in range(n):
            p = vector_path(root, f"{split}{i}")
            p.parent.mkdir(parents=True, exist_ok=True)
            np.save(p, np.eye(3, dtype=np.float16)[i % 2])  # ann: e0, bob: e1
    out = tmp_path / "clone"
    rc = CSMRunConfig(**common, speaker_vectors=True, init_from=str(tmp_path / "single" / "best"))
    assert np.isfinite(train_csm(rc, tiny_train_config(out))["dev_loss"])
    meta = json.loads((out / "best" / "config.json").read_text())
    assert meta["config"]["speaker_vector_dim"] == 3 and meta["speakers"] == ["ann", "bob"]
    assert meta["speaker_vectors"] == {"ann": [1.0, 0.0, 0.0], "bob": [0.0, 1.0, 0.0]}
    part, single = CSM.load(out / "best"), CSM.load(tmp_path / "single" / "best")
    # three steps moved the copied weights a little; the fresh projection is not in the single part at all
    assert not hasattr(single, "speaker_vector_proj") and part.speaker_vector_proj.weight.shape == (64, 3)

    voice = build_voice(tmp_path / "voice", name="clone-csm", codec=tmp_path / "codec", csm=out / "best")
    synth = Synthesizer.load(voice)
    assert synth.engine.clones
    gen = synth.engine.generator
    sf.write(tmp_path / "ref.wav", np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.3, 16000)
    monkeypatch.setattr(speaker, "embed", lambda wav, sr: np.array([0.0, 0.0, 2.0], dtype=np.float32))
    ref = synth.reference(tmp_path / "ref.wav", "a tone")
    assert isinstance(ref, SpeakerReference) and ref.vector.tolist() == [0.0, 0.0, 2.0]
    assert gen.speaker_vector(None).tolist() == [1.0, 0.0, 0.0]  # the first training speaker
    gen.speaker_vectors = dict(reversed(gen.speaker_vectors.items()))  # stored order does not pick it: names do
    assert gen.speaker_vector(None).tolist() == [1.0, 0.0, 0.0]
    with torch.no_grad():  # a tiny model's logits are small: make the speaker matter for drawn codes
        gen.model.speaker_vector_proj.weight.mul_(200)
    plain = gen.generate("the cat sat", seed=0, decode=False).codes
    cloned = gen.generate("the cat sat", ref, seed=0, decode=False).codes
    assert plain.shape == cloned.shape and not torch.equal(plain, cloned)
    wav, _ = synth.synthesize("The cat sat.", seed=0, reference=ref)
    assert np.isfinite(wav).all() and wav.std() > 0
    with pytest.raises(ConfigError, match="reference must come from"):
        synth.synthesize("The cat sat.", reference=(torch.zeros(K, 3, dtype=torch.long), "codes"))


def test_prev_frame_dropout_acts_in_training_only():
    torch.manual_seed(0)
    model = aligned_model(prev_frame_dropout=0.5)
    batch = collate_aligned([random_item(random.Random(3)) for _ in range(2)])
    model.eval()
    with torch.no_grad():
        a, b = model(*batch).loss, model(*batch).loss
    assert torch.equal(a, b)
    model.train()
    with torch.no_grad():
        c = model(*batch, generator=torch.Generator().manual_seed(0)).loss
    assert not torch.equal(a, c)  # hidden frames change the loss (slightly, at init)

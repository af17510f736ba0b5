"""The `codectts train trm` recipe end to end on a synthetic code cache (no audio, no codec weights)."""
import json

import numpy as np
import pytest
import torch
import typer
from typer.testing import CliRunner

from codectts.data.codecache import CacheEntry, write_cache_meta, write_codes, write_index
from codectts.errors import DataError
from codectts.models.trm import positions_from_durations
from codectts.text import PhonemeTokenizer
from codectts.train.trm import read_prompts, register, resolve_speaker

K, N, RATE = 2, 16, 20.0
SENTENCES = ["the cat sat on the mat", "a dog ran home", "birds sing at dawn", "rain falls softly",
             "we walk to town", "the sun is warm", "cold wind blows", "she reads a book"]


def make_cache(root, n_items: int | None = None):
    rng = np.random.default_rng(0)
    write_cache_meta(root, {"type": "synthetic-test"}, K, N, RATE, 16000, "test")
    entries = []
    for i, text in enumerate(SENTENCES[:n_items]):
        f = 2 * len(text)  # frames follow the text length, as in speech
        codes = rng.integers(0, N, size=(K, f))
        rel = write_codes(root, f"u{i}", codes, N)
        phonemes = ["^", *PhonemeTokenizer().units(text), "$"]  # the teacher's layout: ^ phonemes $
        durs = rng.multinomial(f, np.ones(len(phonemes)) / len(phonemes)).tolist()  # some are 0, as the teacher's
        entries.append(CacheEntry(id=f"u{i}", text=text, n_frames=f, file=rel, speaker="ann" if i % 2 else "bob",
                                  phonemes=phonemes, durations=durs))
    write_index(root, entries)
    return root


def cli():
    app = typer.Typer()
    register(app)

    @app.callback()
    def _main():  # a group, so the command is invoked by name as under `codectts train`
        pass

    return app


def test_prompts_file(tmp_path):
    p = tmp_path / "prompts.txt"
    p.write_text("# comment\n0|Hello, this is speaker zero.\n\nann| And this is Ann.\nJust text.\n")
    assert read_prompts(p) == [("0", "Hello, this is speaker zero."), ("ann", "And this is Ann."),
                               (None, "Just text.")]
    p.write_text("bob|\n")
    with pytest.raises(DataError, match=":1: prompt has no text"):
        read_prompts(p)
    assert resolve_speaker("ann", ["ann", "bob"], "x") == 0
    assert resolve_speaker("1", ["ann", "bob"], "x") == 1
    with pytest.raises(DataError, match="unknown speaker"):
        resolve_speaker("carl", ["ann", "bob"], "x")


def test_train_samples_export_and_resume(tmp_path):
    cache = make_cache(tmp_path / "codes")
    run = tmp_path / "run"
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("# two prompts\nann|hello there\nthe quick fox\n")
    args = ["trm", "--codes", str(cache), "--out", str(run), "--preset", "tiny", "--max-steps", "4",
            "--batch-size", "4", "--lr", "3e-3", "--eval-every", "2", "--save-every", "2",
            "--sample-every", "2", "--sample-prompts-file", str(prompts), "--max-dev", "2", "--no-progress"]
    res = CliRunner().invoke(cli(), args)
    assert res.exit_code == 0, res.output
    step = run / "samples" / "step_0000002"
    info = json.loads((step / "info.json").read_text())
    assert [s["text"] for s in info["samples"]] == ["hello there", "the quick fox"]
    assert info["samples"][0]["speaker"] == "ann" and info["wavs"] is False  # no decoder for this codec
    for n, s in enumerate(info["samples"], 1):
        codes = np.load(step / f"sample_{n}_generated.npy")
        assert codes.shape == (K, s["n_frames"]) and codes.min() >= 0 and codes.max() < N

    from codectts.infer.trm import TRMGenerator

    pipe = TRMGenerator.load(run / "last")
    assert pipe.speakers == ["ann", "bob"] and pipe.frame_rate == RATE
    # the fitted rate: 2 frames per character in this cache
    assert pipe.length.n_frames("abcde") == 10
    assert pipe.generate("hello", speaker="bob", seed=0).shape == (K, 10)
    log = [json.loads(line) for line in (run / "log.jsonl").read_text().splitlines()]
    ev = [r for r in log if r["kind"] == "eval"][-1]
    assert {"acc_0", "ce_1", "text_gain", "unigram_ce_0"} <= set(ev)
    assert ev["unigram_ce_0"] == pytest.approx(np.log(N), abs=0.5)  # uniform random codes

    res = CliRunner().invoke(cli(), [*args[:8], "6", *args[9:], "--resume"])
    assert res.exit_code == 0, res.output
    steps = [json.loads(line)["step"] for line in (run / "log.jsonl").read_text().splitlines()]
    assert max(steps) == 6 and (run / "checkpoints" / "step_0000006").exists()


@pytest.mark.parametrize(("text", "align"), [("char", "uniform"), ("phoneme", "uniform"), ("phoneme", "durations")])
def test_default_samples_are_held_out_items_with_ground_truth(tmp_path, text, align):
    cache = make_cache(tmp_path / "codes")
    run = tmp_path / "run"
    res = CliRunner().invoke(cli(), ["trm", "--codes", str(cache), "--out", str(run), "--preset", "tiny",
                                     "--text", text, "--align", align,
                                     "--max-steps", "2", "--sample-every", "2", "--num-samples", "2",
                                     "--max-dev", "2", "--eval-every", "2", "--no-progress"])
    assert res.exit_code == 0, res.output
    info = json.loads((run / "samples" / "step_0000002" / "info.json").read_text())
    assert len(info["samples"]) == 2
    for n, s in enumerate(info["samples"], 1):
        gt = np.load(run / "samples" / f"sample_{n}_ground_truth.npy")
        gen = np.load(run / "samples" / "step_0000002" / f"sample_{n}_generated.npy")
        assert gen.shape == gt.shape == (K, 2 * len(s["text"]))  # a held-out item: generated at its true length
    from codectts.infer.trm import TRMGenerator

    pipe = TRMGenerator.load(run / "last")
    assert pipe.tokenizer.kind == text and pipe.model.cfg.alignment == align


def test_align_durations_needs_phonemes(tmp_path):
    cache = make_cache(tmp_path / "codes")
    res = CliRunner().invoke(cli(), ["trm", "--codes", str(cache), "--out", str(tmp_path / "run"), "--preset",
                                     "tiny", "--align", "durations", "--max-steps", "1", "--no-progress"])
    assert res.exit_code != 0 and "needs --text phoneme" in str(res.exception)


def codec_cache(tmp_path):
    """A synthetic cache that names a (tiny, untrained) mel RVQ codec as its codec; returns (cache, codec cfg)."""
    from codectts.audio import mel_preset
    from codectts.codecs.mel_rvq import MelRVQCodec, MelRVQConfig

    cfg = MelRVQConfig(mel=mel_preset("vocoder"), stack=4, n_codebooks=K, codebook_size=N, codebook_dim=8)
    MelRVQCodec(cfg).save(tmp_path / "codec")
    cache = make_cache(tmp_path / "codes")
    meta = json.loads((cache / "cache.json").read_text())
    meta["codec"] = {"type": "mel_rvq", "path": str(tmp_path / "codec")}
    (cache / "cache.json").write_text(json.dumps(meta))
    return cache, cfg


def test_latent_weight_trains_on_the_codecs_codebooks(tmp_path):
    """--latent-weight adds the expected-latent error (logged in training and evaluation, and in the best
    score); a cache without a mel RVQ codec refuses it instead of training on CE alone."""
    cache, _ = codec_cache(tmp_path)
    run = tmp_path / "run"
    args = ["trm", "--preset", "tiny", "--max-steps", "2", "--eval-every", "2", "--log-every", "1",
            "--max-dev", "2", "--no-progress"]
    res = CliRunner().invoke(cli(), [*args, "--codes", str(cache), "--out", str(run), "--latent-weight", "0.5"])
    assert res.exit_code == 0, res.output
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["kind"] == "train"]
    assert len(train_rows) == 2
    assert all(r["loss"] == pytest.approx(r["ce"] + 0.5 * r["latent"], rel=1e-4) for r in train_rows)
    ev = [r for r in rows if r["kind"] == "eval"][-1]
    assert 0.5 < ev["latent_nmse"] < 2  # an untrained model: about the mean latent's error
    assert ev["score"] == pytest.approx(ev["loss"] + 0.5 * ev["latent_nmse"], rel=1e-4)
    bare = make_cache(tmp_path / "bare")
    res = CliRunner().invoke(cli(), [*args, "--codes", str(bare), "--out", str(tmp_path / "r2"),
                                     "--latent-weight", "1"])
    assert res.exit_code != 0 and "--latent-weight needs a mel RVQ codec" in str(res.exception)


def test_samples_are_decoded_to_wavs_when_the_codec_loads(tmp_path):
    """A cache made by a (tiny, untrained) mel RVQ codec: samples get wavs through Griffin-Lim."""
    import soundfile as sf

    cache, cfg = codec_cache(tmp_path)
    run = tmp_path / "run"
    res = CliRunner().invoke(cli(), ["trm", "--codes", str(cache), "--out", str(run), "--preset", "tiny",
                                     "--max-steps", "1", "--sample-every", "1", "--num-samples", "1",
                                     "--max-dev", "2", "--no-progress"])
    assert res.exit_code == 0, res.output
    step = run / "samples" / "step_0000001"
    info = json.loads((step / "info.json").read_text())
    assert info["wavs"] is True and info["samples"][0]["wav"] == "sample_1_generated.wav"
    wav, sr = sf.read(step / "sample_1_generated.wav")
    assert sr == cfg.mel.sample_rate and len(wav) == info["samples"][0]["n_frames"] * cfg.samples_per_frame
    assert (run / "samples" / "sample_1_ground_truth.wav").exists()


def test_length_from_a_duration_model_travels_inside_the_released_trm(tmp_path):
    """--length-model: the TRM's output length is the duration model's prediction, re-timed to the
    codes' frame rate, and the duration part is copied into the release (issue 10, item 4)."""
    from codectts.infer.trm import TRMGenerator
    from codectts.models.duration import DurationModel, preset
    from codectts.models.length import DurationLength

    torch.manual_seed(0)
    dur_part = DurationModel(preset("tiny", text_vocab=PhonemeTokenizer().vocab_size, frame_rate=40.0)).save(
        tmp_path / "duration")
    cache = make_cache(tmp_path / "codes")
    run = tmp_path / "run"
    res = CliRunner().invoke(cli(), ["trm", "--codes", str(cache), "--out", str(run), "--preset", "tiny",
                                     "--text", "phoneme", "--length-model", str(dur_part), "--max-steps", "2",
                                     "--batch-size", "4", "--max-dev", "2", "--no-progress"])
    assert res.exit_code == 0, res.output
    release = run / "last"
    assert (release / "length_model" / "model.safetensors").exists()
    stored = json.loads((release / "config.json").read_text())["length"]
    assert stored["kind"] == "duration_model" and stored["path"] == "length_model"  # relative: the part moves
    moved = tmp_path / "moved"
    release.rename(moved)
    import shutil

    shutil.rmtree(dur_part)  # the original is gone: the release must not need it
    pipe = TRMGenerator.load(moved)
    assert isinstance(pipe.length, DurationLength)
    src = pipe.length
    expected = round(sum(src.durations("the cat sat")) * RATE / 40.0)  # 40 Hz durations -> 20 Hz codes
    assert src.n_frames("the cat sat") == max(1, expected)
    assert pipe.generate("the cat sat", seed=0).shape == (K, src.n_frames("the cat sat"))


def test_a_duration_aligned_trm_speaks_on_the_length_models_durations(tmp_path):
    """A TRM trained with --align durations never saw uniform positions: as a voice it places frames on the
    duration model's per-phoneme durations (re-timed to the codes' rate, total kept), not a uniform rate."""
    from codectts.infer.trm import TRMGenerator
    from codectts.models.duration import DurationModel
    from codectts.models.duration import preset as dur_preset
    from codectts.models.length import DurationLength
    from codectts.models.trm import TTSTRM
    from codectts.models.trm import preset as trm_preset

    torch.manual_seed(0)
    tok = PhonemeTokenizer()
    dur = DurationModel(dur_preset("tiny", text_vocab=tok.vocab_size, frame_rate=40.0))
    part = dur.save(tmp_path / "duration")
    model = TTSTRM(trm_preset("tiny", vocab_size=tok.vocab_size, n_codebooks=K, codebook_size=N,
                              alignment="durations"))
    gen = TRMGenerator(model, tok, DurationLength(part, frame_rate=RATE), frame_rate=RATE)
    text = "the cat sat on the mat"
    d40 = gen.length.durations(text)
    plan = gen.plan_durations(text)
    assert len(plan) == len(tok.encode(text)) and sum(plan) == round(sum(d40) * RATE / 40.0)
    assert all(abs(sum(plan[:i]) - sum(d40[:i]) * RATE / 40.0) <= 0.5 for i in range(len(plan) + 1))
    logits_on = torch.softmax(model.predict(torch.tensor([tok.encode(text)]), torch.tensor([len(plan)]),
                                            torch.zeros(1, dtype=torch.long), torch.tensor([sum(plan)]),
                                            positions_from_durations(plan)[None])[0], -1)
    probs = gen.generate(text, decode="soft")
    assert gen.n_frames(text) == sum(plan) and torch.allclose(probs, logits_on, atol=1e-6)
    uniform = gen.generate(text, n_frames=sum(plan), decode="soft")
    assert (probs - uniform).abs().max() > 1e-5  # the durations place the frames (random weights: small)
    assert torch.equal(gen.generate(text, seed=0), gen.generate(text, seed=0, durations=plan))


def test_duration_length_source_speed_and_errors(tmp_path):
    from codectts.errors import CheckpointError, ConfigError
    from codectts.models.duration import DurationModel, preset
    from codectts.models.length import DurationLength, LengthSource, length_source_from_dict

    torch.manual_seed(0)
    model = DurationModel(preset("tiny", text_vocab=PhonemeTokenizer().vocab_size, frame_rate=20.0))
    with torch.no_grad():
        model.head.bias.fill_(float(np.log1p(4.0)))  # about 4 frames per phoneme
        model.head.weight.zero_()
    part = model.save(tmp_path / "duration")
    src = DurationLength(part, frame_rate=20.0)
    assert isinstance(src, LengthSource)
    n = src.n_frames("hello world")
    assert n == 4 * len(PhonemeTokenizer().encode("hello world"))
    assert src.n_frames("hello world", speed=2.0) == n // 2
    again = length_source_from_dict(src.to_dict())
    assert again.n_frames("hello world") == n
    with pytest.raises(ConfigError, match="speed"):
        src.n_frames("hello", speed=10.0)
    with pytest.raises(CheckpointError, match="not a model directory"):
        DurationLength(tmp_path / "missing", frame_rate=20.0)


def test_init_from_a_part_starts_from_its_weights_and_refuses_another_architecture(tmp_path):
    """`train trm --init-from PART`: fine-tune a shipped TRM on more data or your own."""
    from codectts.models.trm import TTSTRM

    cache = make_cache(tmp_path / "codes")
    base = ["trm", "--codes", str(cache), "--preset", "tiny", "--batch-size", "4", "--eval-every", "0",
            "--max-dev", "2", "--no-progress"]
    res = CliRunner().invoke(cli(), [*base, "--out", str(tmp_path / "a"), "--max-steps", "3", "--lr", "3e-3"])
    assert res.exit_code == 0, res.output
    source = TTSTRM.load(tmp_path / "a" / "last")
    res = CliRunner().invoke(cli(), [*base, "--out", str(tmp_path / "b"), "--max-steps", "1", "--lr", "1e-12",
                                     "--dropout", "0.1", "--init-from", str(tmp_path / "a" / "last")])
    assert res.exit_code == 0, res.output
    tuned = TTSTRM.load(tmp_path / "b" / "last")
    for (name, a), b in zip(source.state_dict().items(), tuned.state_dict().values(), strict=True):
        assert torch.allclose(a, b, atol=1e-4), name  # lr 1e-12: still the source's weights after one step
    res = CliRunner().invoke(cli(), [*base, "--out", str(tmp_path / "c"), "--max-steps", "1",
                                     "--audio-embed-dim", "48", "--init-from", str(tmp_path / "a" / "last")])
    assert res.exit_code != 0 and "differs" in str(res.exception)


def test_init_from_a_single_speaker_part_into_a_cloning_model(tmp_path):
    """A shipped single-speaker TRM seeds a cloning one: everything but the speaker conditioning is copied."""
    from codectts.errors import CheckpointError
    from codectts.models.trm import TTSTRM
    from codectts.models.trm import preset as trm_preset

    torch.manual_seed(0)
    single = TTSTRM(trm_preset("tiny", vocab_size=40, n_codebooks=K, codebook_size=N))
    part = single.save(tmp_path / "single")
    cloning = TTSTRM(trm_preset("tiny", vocab_size=40, n_codebooks=K, codebook_size=N, n_speakers=3,
                                speaker_vector_dim=16))
    proj = cloning.speaker_vector_proj.weight.clone()
    with pytest.raises(CheckpointError, match="differs"):
        cloning.init_from(part)
    cloning.init_from(part, adaptable=("n_speakers", "speaker_vector_dim"))
    theirs = single.state_dict()
    for name, w in cloning.state_dict().items():
        if name.startswith("speaker_vector_proj"):
            assert torch.equal(w, proj)  # new: left at its initialisation
        else:
            assert torch.equal(w, theirs[name]), name
    wider = TTSTRM(trm_preset("tiny", vocab_size=40, n_codebooks=K, codebook_size=N, dim=48))
    with pytest.raises(CheckpointError, match="differs"):  # adaptable never covers the architecture
        wider.init_from(part, adaptable=("n_speakers", "speaker_vector_dim"))


def test_init_from_a_part_trained_on_another_codec(tmp_path):
    """A TRM part seeds a model for a codec with other codebooks: the text side carries over, the
    per-codebook embeddings and output heads start afresh (what --init-from does with INIT_ADAPTABLE)."""
    from codectts.models.trm import TTSTRM
    from codectts.models.trm import preset as trm_preset
    from codectts.train.trm import INIT_ADAPTABLE

    torch.manual_seed(0)
    old = TTSTRM(trm_preset("tiny", vocab_size=40, n_codebooks=K, codebook_size=N))
    part = old.save(tmp_path / "old")
    new = TTSTRM(trm_preset("tiny", vocab_size=40, n_codebooks=2 * K, codebook_size=2 * N))
    fresh = {k: v.clone() for k, v in new.state_dict().items()}
    new.init_from(part, adaptable=INIT_ADAPTABLE)
    theirs = old.state_dict()
    for name, w in new.state_dict().items():
        if name in ("codebook_embed.weight", "out_weight"):
            assert w.shape != theirs[name].shape and torch.equal(w, fresh[name]), name
        else:
            assert torch.equal(w, theirs[name]), name
    out = new(torch.randint(0, 40, (1, 6)), torch.tensor([6]), torch.tensor([0]), torch.tensor([5]))
    assert out.logits.shape[1:] == (2 * K, 5, 2 * N)


def test_speaker_vectors_are_extracted_and_condition_training(tmp_path):
    """`codes speaker-vectors` writes a vector per utterance (resumable; refused clips counted), and
    `train trm --speaker-vectors` trains on them and stores each speaker's mean vector in the part."""
    import soundfile as sf

    from codectts.data.codecache import CodeCache
    from codectts.data.speaker_vectors import extract_speaker_vectors, read_speaker_vector
    from codectts.errors import AudioError
    from codectts.infer.trm import TRMGenerator

    cache = make_cache(tmp_path / "codes")
    corpus = tmp_path / "corpus"
    (corpus / "wavs").mkdir(parents=True)
    rows = []
    for e in CodeCache(cache).entries:
        level = 0.0 if e.id == "u0" else 0.1 if e.speaker == "ann" else -0.1  # u0: a clip the encoder refuses
        sf.write(corpus / "wavs" / f"{e.id}.wav", np.full(1600, level, np.float32), 16000)
        rows.append(json.dumps({"id": e.id, "audio": f"wavs/{e.id}.wav", "text": e.text, "speaker": e.speaker}))
    (corpus / "manifest.jsonl").write_text("\n".join(rows) + "\n")

    def embed(wav, sr):  # a stand-in for resemblyzer: the clip's sign tells the speaker
        if abs(wav.mean()) < 1e-6:
            raise AudioError("silent")
        return np.array([1.0, 0.0] if wav.mean() > 0 else [0.0, 1.0], np.float32) + 0.01

    assert extract_speaker_vectors(cache, corpus, embed=embed, progress=False) == \
        {"written": len(SENTENCES) - 1, "existing": 0, "failed": 1}
    assert extract_speaker_vectors(cache, corpus, embed=embed, progress=False)["existing"] == len(SENTENCES) - 1
    assert read_speaker_vector(cache, "u1")[:2] == pytest.approx([1.01, 0.01], abs=1e-3)  # u1 is ann's
    assert read_speaker_vector(cache, "u0") is None

    run = tmp_path / "run"
    res = CliRunner().invoke(cli(), ["trm", "--codes", str(cache), "--out", str(run), "--preset", "tiny",
                                     "--max-steps", "2", "--batch-size", "4", "--eval-every", "2",
                                     "--max-dev", "2", "--no-progress", "--speaker-vectors"])
    assert res.exit_code == 0, res.output
    gen = TRMGenerator.load(run / "last")
    assert gen.clones and gen.model.cfg.speaker_vector_dim == 2
    assert set(gen.speaker_vectors) <= {"ann", "bob"} and gen.speaker_vectors
    name = next(iter(gen.speaker_vectors))
    assert gen.generate("hello", speaker=name, seed=0).shape[0] == K
    res = CliRunner().invoke(cli(), ["trm", "--codes", str(tmp_path / "nocodes"), "--out", str(tmp_path / "r2"),
                                     "--speaker-vectors"])
    assert res.exit_code != 0
    bare = make_cache(tmp_path / "bare")
    res = CliRunner().invoke(cli(), ["trm", "--codes", str(bare), "--out", str(tmp_path / "r3"), "--preset", "tiny",
                                     "--max-steps", "1", "--speaker-vectors", "--no-progress"])
    assert res.exit_code != 0 and "codes speaker-vectors" in str(res.exception)

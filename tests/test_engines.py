"""Voices whose acoustic model is a TTS TRM or a CSM go through the same Synthesizer, CLI and streaming
as Talker voices (random-initialised tiny parts; what is checked is the plumbing, not the speech)."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from codectts.errors import ConfigError


def write_voice(folder, meta: dict):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "voice.json").write_text(json.dumps({"format_version": 1, **meta}))
    return folder


@pytest.fixture(scope="module")
def trm_voice(tmp_path_factory, tiny_mel_codec):
    from codectts.models.length import CharRateLength
    from codectts.models.trm import TTSTRM, preset
    from codectts.text.tokenizers import CharTokenizer
    from codectts.vocoders import GriffinLim

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("voices") / "trm"
    codec = tiny_mel_codec()
    codec.save(root / "codec")
    tok = CharTokenizer()
    model = TTSTRM(preset("tiny", vocab_size=tok.vocab_size, n_speakers=1, n_codebooks=4, codebook_size=64))
    model.save(root / "trm", extra={"tokenizer": tok.to_dict(), "speakers": ["0"], "frame_rate": codec.frame_rate,
                                         "length": CharRateLength(frame_rate=codec.frame_rate,
                                                                  seconds_per_char=0.07).to_dict()})
    return write_voice(root, {"name": "trm", "model": {"type": "trm", "path": "trm"},
                              "codec": {"type": "mel_rvq", "path": "codec"},
                              "vocoder": GriffinLim(codec.cfg.mel, n_iter=4).spec(), "sampling": {"temperature": 0.8}})


def test_trm_voice_speaks_streams_and_keeps_its_length(trm_voice):
    from codectts.infer import Synthesizer

    s = Synthesizer.load(trm_voice)
    assert s.engine.kind == "trm" and s.sample_rate == 22050
    text = "Hello world. A second sentence!"
    wav, sr = s.synthesize(text, seed=3)
    assert wav.dtype == np.float32 and np.isfinite(wav).all() and wav.std() > 0
    again, _ = s.synthesize(text, seed=3)
    assert np.array_equal(wav, again)  # the seed reaches the non-autoregressive sampler
    chunks = list(s.stream(text, seed=3, chunk_frames=4))
    assert len(chunks) > 2 and sum(len(c) for c in chunks) == len(wav)
    codes = s.sentence_codes("hello world", seed=0)
    assert codes.shape[-1] == s.engine.generator.length.n_frames("hello world")  # length from the part's source
    assert s.sentence_codes("hello world", speed=2.0, seed=0).shape[-1] < codes.shape[-1]
    with pytest.raises(ConfigError, match="cannot clone"):
        s.reference(__file__, "x")


def test_soft_decoding_trm_voice_decodes_distributions(trm_voice, tmp_path):
    """"decode": "soft": the engine yields each frame's distributions and the Synthesizer decodes the expected
    codec latent; no sampling, so every seed gives the same audio, and streaming matches the whole."""
    import shutil

    from codectts.infer import Synthesizer

    soft = tmp_path / "soft"
    shutil.copytree(trm_voice, soft)
    meta = json.loads((soft / "voice.json").read_text())
    meta["model"]["decode"] = "soft"
    (soft / "voice.json").write_text(json.dumps(meta))
    s = Synthesizer.load(soft)
    probs = s.sentence_codes("hello world", seed=0)
    n = s.engine.generator.length.n_frames("hello world")
    assert probs.shape == (1, 4, n, 64) and probs.is_floating_point()
    assert torch.allclose(probs.sum(-1), torch.ones(1, 4, n))
    text = "Hello world. A second sentence!"
    wav, _ = s.synthesize(text, seed=3)
    assert np.isfinite(wav).all() and wav.std() > 0
    assert np.array_equal(wav, s.synthesize(text, seed=4)[0])  # nothing drawn
    chunks = list(s.stream(text, seed=3, chunk_frames=4))
    assert len(chunks) > 2 and sum(len(c) for c in chunks) == len(wav)
    # the same voice decoding drawn codes sounds different (and depends on the seed)
    assert not np.array_equal(wav, Synthesizer.load(trm_voice).synthesize(text, seed=3)[0])
    meta["model"] = {"type": "talker", "path": "trm", "decode": "soft"}
    (soft / "voice.json").write_text(json.dumps({**meta, "tokenizer": "tok.json"}))
    with pytest.raises(ConfigError, match="for trm models only"):
        Synthesizer.load(soft)


def test_make_voice_builds_a_trm_voice_with_a_duration_model(trm_voice, tmp_path):
    """make-voice --trm: the TRM part (fp16, with its tokenizer), the codec, Griffin-Lim and the duration model
    as the TRM's length source (inside the part, so the voice moves); --decode soft reaches the engine."""
    from click.testing import CliRunner
    from safetensors import safe_open

    from codectts.cli import command
    from codectts.infer import Synthesizer
    from codectts.models.duration import DurationModel, preset
    from codectts.models.length import DurationLength
    from codectts.text import PhonemeTokenizer

    torch.manual_seed(0)
    codec_rate = Synthesizer.load(trm_voice).codec.frame_rate
    dur = DurationModel(preset("tiny", text_vocab=PhonemeTokenizer().vocab_size, frame_rate=codec_rate))
    dur_part = dur.save(tmp_path / "duration")
    out = tmp_path / "voice"
    args = ["make-voice", "--out", out, "--name", "t", "--trm", trm_voice / "trm", "--codec", trm_voice / "codec",
            "--duration", dur_part, "--decode", "soft"]
    r = CliRunner().invoke(command(), [str(a) for a in args])
    assert r.exit_code == 0, str(r.exception)
    dur_part.rename(tmp_path / "gone")  # the voice must not need the original
    s = Synthesizer.load(out)
    assert s.engine.kind == "trm" and s.engine.decode == "soft"
    assert isinstance(s.engine.generator.length, DurationLength)
    n = s.engine.generator.length.n_frames("hello world")
    assert s.sentence_codes("hello world").shape[2] == n
    assert np.isfinite(s.synthesize("Hello world.")[0]).all()
    with safe_open(str(out / "trm" / "model.safetensors"), "pt") as f:
        assert all(f.get_tensor(k).dtype == torch.float16 for k in f.keys() if "init" in k)
    assert not (out / "tokenizer.json").exists()  # the part carries its own
    r = CliRunner().invoke(command(), [str(a) for a in ["make-voice", "--out", tmp_path / "x", "--name", "x",
                                                        "--codec", trm_voice / "codec"]])
    assert isinstance(r.exception, ConfigError) and "exactly one acoustic model" in str(r.exception)


def test_trm_voice_with_mismatched_codec_is_refused(trm_voice, tmp_path, tiny_mel_codec):
    import shutil

    from codectts.infer import Synthesizer

    bad = tmp_path / "bad"
    shutil.copytree(trm_voice, bad)
    shutil.rmtree(bad / "codec")
    tiny_mel_codec(codebook_size=32).save(bad / "codec")
    with pytest.raises(ConfigError, match="predicts 4 x 64 codes but the codec has 4 x 32"):
        Synthesizer.load(bad)


@pytest.fixture(scope="module")
def csm_voice(tmp_path_factory, tiny_mimi_dir, sine):
    import shutil

    from codectts.models.csm import CSM, preset
    from codectts.text.tokenizers import CharTokenizer

    root = tmp_path_factory.mktemp("voices") / "csm"
    shutil.copytree(tiny_mimi_dir, root / "mimi")
    tok = CharTokenizer()
    torch.manual_seed(0)
    CSM(preset("tiny", text_vocab_size=tok.vocab_size, n_codebooks=4, codebook_size=256)).save(
        root / "csm", extra={"tokenizer": tok.to_dict()})
    sf.write(root / "ref.wav", sine(220, 24_000, 0.5, 0.3), 24_000)
    return write_voice(root, {"name": "csm", "model": {"type": "csm", "path": "csm"},
                              "codec": {"type": "mimi", "source": "mimi", "n_codebooks": 4},
                              "sampling": {"temperature": 0.9, "top_k": 50}})


def test_csm_voice_speaks_clones_and_streams(csm_voice, tmp_path):
    from codectts.infer import Synthesizer

    s = Synthesizer.load(csm_voice)
    assert s.engine.kind == "csm" and s.sample_rate == 24_000 and s.vocoder is None
    wav, sr = s.synthesize("hi there", seed=0)
    assert sr == 24_000 and len(wav) % 1920 == 0 and len(wav) > 0 and np.isfinite(wav).all()
    ref = s.reference(csm_voice / "ref.wav", "a low tone")
    assert ref.codes.shape == (4, 7)  # 0.5 s at 24 kHz, 1920 samples a frame
    cloned = s.sentence_codes("hi there", seed=0, reference=ref)
    assert not torch.equal(cloned, s.sentence_codes("hi there", seed=0))  # the reference steers the model
    streamed = np.concatenate(list(s.stream("hi there", seed=0)))
    assert np.allclose(streamed, wav, atol=1e-5)  # Mimi decodes per sentence: same audio as a whole
    with pytest.raises(ConfigError, match="speed"):
        s.synthesize("hi there", speed=1.5)
    with pytest.raises(Exception, match="transcript"):
        s.reference(csm_voice / "ref.wav", "  ")


def test_say_with_a_reference_clip(csm_voice, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "clone.wav"
    say = [sys.executable, "-m", "codectts.cli", "say", "hi there", "-o", str(out), "--voice", str(csm_voice)]
    r = subprocess.run([*say, "--seed", "0", "--reference", str(csm_voice / "ref.wav"), "--reference-text", "a tone"],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    wav, sr = sf.read(out)
    assert sr == 24_000 and len(wav) > 0
    r = subprocess.run([*say, "--reference", str(csm_voice / "ref.wav")], capture_output=True, text=True, timeout=300)
    assert r.returncode != 0 and "go together" in r.stderr


def test_make_voice_ships_a_vocos_part_and_refuses_one_made_for_another_codec(trm_voice, tmp_path, tiny_mel_codec):
    """--vocoder takes any trained vocoder part (its config says hifigan or vocos); a Vocos that learned another
    codec's decoded mels is refused before anything is written."""
    from click.testing import CliRunner

    from codectts.cli import command
    from codectts.codecs.mel_rvq import MelRVQCodec
    from codectts.infer import Synthesizer
    from codectts.vocoders import Vocos, vocos_preset
    from codectts.vocoders.vocos import codec_identity

    codec = MelRVQCodec.load(trm_voice / "codec")
    torch.manual_seed(0)
    Vocos(vocos_preset("tiny", mel=codec.cfg.mel, codec=codec_identity(codec))).save(tmp_path / "vocos")
    base = ["make-voice", "--name", "t", "--trm", trm_voice / "trm", "--codec", trm_voice / "codec"]
    make = [*base, "--out", tmp_path / "v", "--vocoder", tmp_path / "vocos"]
    r = CliRunner().invoke(command(), [str(a) for a in make])
    assert r.exit_code == 0, str(r.exception)
    assert json.loads((tmp_path / "v" / "voice.json").read_text())["vocoder"]["type"] == "vocos"
    from safetensors.torch import load_file

    trained, shipped = load_file(tmp_path / "vocos" / "model.safetensors"), load_file(tmp_path / "v" / "vocoder"
                                                                                          / "model.safetensors")
    assert {v.dtype for v in shipped.values()} == {torch.float16}  # fp16 like every part (--half, the default)
    assert all(torch.allclose(shipped[k].float(), v, atol=1e-3, rtol=1e-2) for k, v in trained.items())
    s = Synthesizer.load(tmp_path / "v")
    assert isinstance(s.vocoder, Vocos)
    wav, sr = s.synthesize("Hello world.", seed=3)
    assert np.isfinite(wav).all()
    streamed = np.concatenate(list(s.stream("Hello world.", seed=3, chunk_frames=2)))
    np.testing.assert_allclose(streamed, wav, atol=1e-4)  # a Vocos streams with its whole receptive field: exact

    # Griffin-Lim in its place (the fallback and the A/B baseline): same mel, same codes, other audio.
    from codectts.vocoders import GriffinLim

    gl = Synthesizer.load(tmp_path / "v", vocoder="griffinlim")
    assert isinstance(gl.vocoder, GriffinLim) and gl.vocoder.mel == s.vocoder.mel
    assert torch.equal(gl.sentence_codes("hello world", seed=3), s.sentence_codes("hello world", seed=3))
    assert len(gl.synthesize("Hello world.", seed=3)[0]) == len(wav)
    with pytest.raises(ConfigError, match="not 'griffinlim'"):
        Synthesizer.load(tmp_path / "v", vocoder=str(tmp_path / "vocos"))
    r = CliRunner().invoke(command(), ["say", "Hello world.", "--voice", str(tmp_path / "v"), "--vocoder",
                                       "griffinlim", "-o", str(tmp_path / "gl.wav")])
    assert r.exit_code == 0, str(r.exception)
    assert sf.info(str(tmp_path / "gl.wav")).frames == len(wav)

    other = tiny_mel_codec(codebook_size=32)
    Vocos(vocos_preset("tiny", mel=codec.cfg.mel, codec=codec_identity(other))).save(tmp_path / "other")
    make = [*base, "--out", tmp_path / "w", "--vocoder", tmp_path / "other"]
    r = CliRunner().invoke(command(), [str(a) for a in make])
    assert isinstance(r.exception, ConfigError) and "decoded mels" in str(r.exception)
    assert not (tmp_path / "w").exists()


def test_make_voice_builds_a_csm_voice(csm_voice, tmp_path):
    """build_voice(csm=...): the part with its tokenizer, Mimi copied in, the reference clip as the
    voice's default speaker; the voice speaks as the hand-made one; bad combinations are refused."""
    from codectts.infer import Synthesizer
    from codectts.infer.packaging import build_voice

    out = build_voice(tmp_path / "built", name="built", csm=csm_voice / "csm", codec=csm_voice / "mimi",
                      half=False, reference=csm_voice / "ref.wav", reference_text="a low tone",
                      sampling={"temperature": 0.9, "top_k": 50})
    meta = json.loads((out / "voice.json").read_text())
    assert meta["model"] == {"type": "csm", "path": "csm"} and meta["codec"]["source"] == "codec"
    assert meta["codec"]["n_codebooks"] == 4 and meta["reference"] == {"audio": "reference.wav", "text": "a low tone"}
    built, hand = Synthesizer.load(out), Synthesizer.load(csm_voice)
    ref = hand.reference(csm_voice / "ref.wav", "a low tone")
    assert torch.equal(built.sentence_codes("hi there", seed=0),
                       hand.sentence_codes("hi there", seed=0, reference=ref))  # its default speaker
    from codectts.cli import app

    half = tmp_path / "half"
    res = CliRunner().invoke(app, ["make-voice", "--out", str(half), "--name", "half", "--csm", str(csm_voice / "csm"),
                                   "--codec", str(csm_voice / "mimi")])
    assert res.exit_code == 0, res.output
    wav, sr = Synthesizer.load(half).synthesize("hi there", seed=0)  # fp16 weights, no reference: speaks
    assert sr == 24_000 and len(wav) > 0 and np.isfinite(wav).all()
    with pytest.raises(ConfigError, match="transcript"):
        build_voice(tmp_path / "x", name="x", csm=csm_voice / "csm", codec=csm_voice / "mimi",
                    reference=csm_voice / "ref.wav")
    with pytest.raises(ConfigError, match="exactly one"):
        build_voice(tmp_path / "x", name="x", csm=csm_voice / "csm", trm=csm_voice / "csm", codec=csm_voice / "mimi")
    assert not (tmp_path / "x").exists()


def test_a_trm_trained_on_speaker_vectors_clones_a_reference_clip(tmp_path, tiny_mel_codec, monkeypatch):
    """A speaker-vector TRM voice: by name it speaks as a training speaker (their mean vector); with
    `reference(clip, text)` it takes the clip's vector, so the clip steers the audio."""
    import codectts.eval.speaker as speaker
    from codectts.infer import Synthesizer
    from codectts.infer.trm import SpeakerReference
    from codectts.models.length import CharRateLength
    from codectts.models.trm import TTSTRM, preset
    from codectts.text.tokenizers import CharTokenizer
    from codectts.vocoders import GriffinLim

    torch.manual_seed(0)
    codec = tiny_mel_codec()
    codec.save(tmp_path / "codec")
    tok = CharTokenizer()
    model = TTSTRM(preset("tiny", vocab_size=tok.vocab_size, n_speakers=2, n_codebooks=4, codebook_size=64,
                          speaker_vector_dim=3))
    model.save(tmp_path / "trm", extra={"tokenizer": tok.to_dict(), "speakers": ["ann", "bob"],
                                        "speaker_vectors": {"ann": [1.0, 0.0, 0.0], "bob": [0.0, 1.0, 0.0]},
                                        "frame_rate": codec.frame_rate,
                                        "length": CharRateLength(frame_rate=codec.frame_rate,
                                                                 seconds_per_char=0.07).to_dict()})
    voice = write_voice(tmp_path, {"name": "clone", "model": {"type": "trm", "path": "trm"},
                                   "codec": {"type": "mel_rvq", "path": "codec"},
                                   "vocoder": GriffinLim(codec.cfg.mel, n_iter=4).spec(),
                                   "sampling": {"temperature": 1.0}})
    sf.write(tmp_path / "ref.wav", np.sin(np.arange(16000) * 0.05).astype(np.float32) * 0.3, 16000)
    monkeypatch.setattr(speaker, "embed", lambda wav, sr: np.array([0.0, 0.0, 2.0], dtype=np.float32))
    s = Synthesizer.load(voice)
    assert s.engine.clones
    ref = s.reference(tmp_path / "ref.wav", "a tone")
    assert isinstance(ref, SpeakerReference) and ref.vector.tolist() == [0.0, 0.0, 2.0]
    gen = s.engine.generator
    with torch.no_grad():  # a random model's logits are small: compare the distributions, not drawn codes
        gen.model.speaker_vector_proj.weight.mul_(100)
    plain = gen.generate("hi there", speaker="ann", decode="soft")
    assert torch.equal(plain, gen.generate("hi there", decode="soft"))  # the first speaker by default
    assert not torch.allclose(plain, gen.generate("hi there", decode="soft", reference=ref))  # the clip sets the voice
    assert gen.speaker_vector("bob", None).tolist() == [0.0, 1.0, 0.0]
    wav, _ = s.synthesize("Hello there.", seed=0, reference=ref)
    assert np.isfinite(wav).all() and wav.std() > 0
    with pytest.raises(ConfigError, match="reference must come from"):
        s.synthesize("Hello there.", reference=(torch.zeros(4, 3, dtype=torch.long), "codes"))
    with pytest.raises(ConfigError, match="speaker_vector"):
        model(torch.ones(1, 3, dtype=torch.long), torch.tensor([3]), torch.tensor([0]), torch.tensor([4]))

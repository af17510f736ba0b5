"""Synthesizer and CLI on a tiny voice assembled in the test from random-initialised real parts."""
import json
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf
import torch

from codectts.errors import CheckpointError, ConfigError, TextError


@pytest.fixture(scope="module")
def tiny_voice(tmp_path_factory, tiny_mel_codec):
    from codectts.infer.packaging import build_voice
    from codectts.models.duration import DurationConfig, DurationModel
    from codectts.models.talker import Talker, TalkerConfig
    from codectts.text.tokenizers import PhonemeTokenizer

    torch.manual_seed(0)
    d = tmp_path_factory.mktemp("parts")
    codec = tiny_mel_codec()
    codec.save(d / "codec")
    vocab = PhonemeTokenizer().vocab_size
    talker = Talker(TalkerConfig(dim=32, n_layers=1, n_heads=2, n_kv_heads=1, ffn_dim=64, n_codebooks=4,
                                 codebook_size=64, conditioning="aligned", text_vocab=vocab, text_layers=1,
                                 depth_heads=True))
    talker.save(d / "talker")
    dur = DurationModel(DurationConfig(text_vocab=vocab, dim=32, n_layers=1, n_heads=2, ffn_dim=64,
                                       frame_rate=codec.frame_rate))
    torch.nn.init.constant_(dur.head.bias, 1.0)  # ~1.7 frames per phoneme
    dur.save(d / "duration")
    out = tmp_path_factory.mktemp("voices") / "tiny"
    build_voice(out, name="tiny", talker=d / "talker", codec=d / "codec", duration=d / "duration",
                description="random weights, for tests")
    return out


def test_synthesize_and_stream(tiny_voice):
    from codectts.infer import Synthesizer

    s = Synthesizer.load(tiny_voice)
    assert s.sample_rate == 22050 and s.name == "tiny"
    wav, sr = s.synthesize("Hello world. Second sentence here!", seed=1)
    assert wav.dtype == np.float32 and np.isfinite(wav).all() and np.abs(wav).max() <= 1.0
    chunks = list(s.stream("Hello world. Second sentence here!", seed=1, chunk_frames=4))
    assert len(chunks) > 2
    assert sum(len(c) for c in chunks) == len(wav)  # same codes, same length; pause included


def test_stream_first_chunk_arrives_before_the_end(tiny_voice):
    from codectts.infer import Synthesizer

    s = Synthesizer.load(tiny_voice)
    text = "This sentence is long enough to need many frames of audio in total."
    it = s.stream(text, seed=0, chunk_frames=4)
    first = next(it)
    rest = sum(len(c) for c in it)
    assert 0 < len(first) < rest


def test_synthesize_stops_between_sentences_when_asked(tiny_voice):
    """The server's cancellation hook: asked before each sentence; True ends generation early."""
    from codectts.errors import GenerationError
    from codectts.infer import Synthesizer

    s = Synthesizer.load(tiny_voice)
    text = "First sentence here. Second sentence here. Third one."
    asked = []

    def stop_after_first() -> bool:
        asked.append(1)
        return len(asked) > 1

    with pytest.raises(GenerationError, match="sentence 2"):
        s.synthesize(text, seed=1, should_stop=stop_after_first)
    assert len(asked) == 2
    a, _ = s.synthesize(text, seed=1, should_stop=lambda: False)
    b, _ = s.synthesize(text, seed=1)
    assert np.array_equal(a, b)


def test_same_seed_same_audio_and_speed(tiny_voice):
    from codectts.infer import Synthesizer

    s = Synthesizer.load(tiny_voice)
    a, _ = s.synthesize("Testing one two three.", seed=5)
    b, _ = s.synthesize("Testing one two three.", seed=5)
    assert np.array_equal(a, b)
    slow, _ = s.synthesize("Testing one two three.", seed=5, speed=0.5)
    assert len(slow) > 1.5 * len(a)


def test_bad_text_and_long_text(tiny_voice):
    from codectts.infer import Synthesizer

    s = Synthesizer.load(tiny_voice)
    for bad in ("", "   ", "\U0001F600\U0001F600"):
        with pytest.raises(TextError):
            s.synthesize(bad)
    long = " ".join(["A short sentence."] * 60)
    n = sum(len(c) for c in s.stream(long, temperature=0))
    assert n > 60 * 0.2 * s.sample_rate


def test_broken_voices_fail_at_load(tiny_voice, tmp_path):
    import shutil

    from codectts.infer import Synthesizer

    broken = tmp_path / "broken"
    shutil.copytree(tiny_voice, broken)
    shutil.rmtree(broken / "duration")
    with pytest.raises(ConfigError, match="missing part 'duration'"):
        Synthesizer.load(broken)
    meta = json.loads((tiny_voice / "voice.json").read_text())
    shutil.copytree(tiny_voice / "duration", broken / "duration")
    meta["codec"]["path"] = "talker"  # a talker where the codec should be
    (broken / "voice.json").write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="holds a 'talker', expected a 'mel_rvq_codec'"):
        Synthesizer.load(broken)
    with pytest.raises(ConfigError, match="not found"):
        Synthesizer.load("no-such-voice")


def test_cli_say_roundtrip(tiny_voice, tmp_path):
    out = tmp_path / "x.wav"
    r = subprocess.run([sys.executable, "-m", "codectts.cli", "say", "Hello there.", "--voice", str(tiny_voice),
                        "-o", str(out), "--seed", "1"], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    wav, sr = sf.read(out)
    assert sr == 22050 and len(wav) > 0
    r = subprocess.run([sys.executable, "-m", "codectts.cli", "say", "-", "--voice", str(tiny_voice), "-o", "-"],
                       input=b"From standard input.", capture_output=True, timeout=120)
    assert r.returncode == 0 and r.stdout[:4] == b"RIFF"
    r = subprocess.run([sys.executable, "-m", "codectts.cli", "say", "   ", "--voice", str(tiny_voice)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 2 and "error:" in r.stderr and "Traceback" not in r.stderr


def test_shipped_default_voice_speaks():
    """The voice inside the package loads without training or network and makes plausible audio."""
    from codectts.infer import Synthesizer

    s = Synthesizer.load()
    assert s.name == "joe"
    wav, sr = s.synthesize("Hello, this is a test.", seed=0)
    assert sr == 22050 and 0.6 * sr < len(wav) < 4 * sr
    assert np.abs(wav).max() > 0.05 and np.isfinite(wav).all()


def test_voice_context_windows_reach_the_talker(tiny_voice, tmp_path):
    """make-voice --context-frames/--context-phonemes -> voice.json "context" -> the talker's attention spans."""
    from codectts.infer import Synthesizer
    from codectts.infer.packaging import build_voice

    out = build_voice(tmp_path / "ctx", name="ctx", talker=tiny_voice / "talker", codec=tiny_voice / "codec",
                      duration=tiny_voice / "duration", context={"frames": 6, "phonemes": 3})
    assert json.loads((out / "voice.json").read_text())["context"] == {"frames": 6, "phonemes": 3}
    s, plain = Synthesizer.load(out), Synthesizer.load(tiny_voice)
    assert (s.engine.window, s.engine.text_window) == (6, 3)
    text = "A sentence long enough for the windows to matter, with many phonemes in it."
    a, b = s.sentence_codes(text, seed=0), plain.sentence_codes(text, seed=0)
    assert a.shape == b.shape and not torch.equal(a, b)  # same length (durations), other attention

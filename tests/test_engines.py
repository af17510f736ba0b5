"""Voices whose acoustic model is a TTS TRM or a CSM go through the same Synthesizer, CLI and streaming
as Talker voices (random-initialised tiny parts; what is checked is the plumbing, not the speech)."""
import json

import numpy as np
import pytest
import soundfile as sf
import torch

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

"""Every voice shipped in the package is complete, within the size rule, loads and speaks."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import codectts

VOICES = sorted(p for p in (Path(codectts.__file__).parent / "voices").iterdir() if (p / "voice.json").exists())
MAX_FILE_BYTES = 40 * 1024 * 1024  # the project's limit for a committed weight file
TEXT = "The quick brown fox jumps over the lazy dog."


def test_the_default_voice_and_a_second_one_ship():
    assert {"joe", "slt"} <= {p.name for p in VOICES}


@pytest.mark.parametrize("voice", VOICES, ids=lambda p: p.name)
def test_voice_folder_is_complete_and_small(voice):
    meta = json.loads((voice / "voice.json").read_text(encoding="utf-8"))
    assert meta["name"] == voice.name
    assert (voice / "MODEL_CARD.md").read_text(encoding="utf-8").startswith(f"# {voice.name}")
    weights = list(voice.rglob("*.safetensors"))
    assert weights, "a shipped voice carries trained weights"
    for f in voice.rglob("*"):
        if f.is_file():
            assert f.stat().st_size <= MAX_FILE_BYTES, f"{f} is over 40 MB"
            assert f.suffix not in {".pt", ".pth", ".bin", ".ckpt"}, f"{f}: weights go in safetensors"


@pytest.mark.slow
@pytest.mark.parametrize("voice", VOICES, ids=lambda p: p.name)
def test_voice_loads_and_speaks(voice):
    from codectts.infer import Synthesizer

    synth = Synthesizer.load(str(voice))
    audio, sr = synth.synthesize(TEXT, seed=0)
    seconds = audio.size / sr
    assert 1.5 < seconds < 6.0, f"{voice.name}: {seconds:.2f} s for nine words"
    assert np.isfinite(audio).all() and np.abs(audio).max() > 0.05


def model_config(voice: Path) -> dict:
    """The model part's config of a voice folder (the architecture's fields)."""
    part = json.loads((voice / "voice.json").read_text(encoding="utf-8"))["model"]["path"]
    return json.loads((voice / part / "config.json").read_text(encoding="utf-8"))["config"]


CLONING = [p for p in VOICES if model_config(p).get("speaker_vector_dim")]  # trm / csm on speaker vectors


def median_pitch(wav: np.ndarray, sr: int) -> float:
    """Median F0 (Hz) of the loud frames."""
    import librosa

    f0 = librosa.yin(wav, fmin=60, fmax=400, sr=sr)
    rms = librosa.feature.rms(y=wav)[0][: len(f0)]
    return float(np.median(f0[: len(rms)][rms > 0.3 * rms.max()]))


def test_a_cloning_voice_ships():
    assert {"clone-trm", "clone-csm"} <= {p.name for p in CLONING}


@pytest.mark.slow
@pytest.mark.parametrize("voice", CLONING, ids=lambda p: p.name)
def test_cloning_voice_speaks_as_each_training_speaker(voice):
    """The speaker vector sets the voice: slt (a woman) comes out pitched well above joe and kal (men)."""
    import torch

    from codectts.infer import Synthesizer
    from codectts.infer.speakers import SpeakerReference

    synth = Synthesizer.load(str(voice))
    assert synth.engine.clones
    means = synth.engine.generator.speaker_vectors
    pitch = {}
    for name in ("joe", "kal", "slt"):
        audio, sr = synth.synthesize(TEXT, seed=0, reference=SpeakerReference(torch.tensor(means[name]), ""))
        pitch[name] = median_pitch(audio, sr)
    assert pitch["slt"] > 150 and pitch["joe"] < 130 and pitch["kal"] < 130, pitch

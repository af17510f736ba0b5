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

"""Pitch-shifted copies of a corpus as new speakers, for cloning: `codectts corpus shift`.

A cloning model reads the voice from a clip's speaker vector; with three or four training speakers it
can only pick among them, and a new voice comes out as the nearest one (docs/cloning.md). Real English
speakers are scarce offline, so more are made: a phase-vocoder pitch shift (librosa) scales pitch and
the spectral envelope together, as a longer or shorter vocal tract would, and keeps every utterance's
length to the sample, so the source's phonemes and durations stay valid and need no new alignment.
The copy is a corpus of its own (its audio under out/wavs/, same ids and rows); `corpus merge`
names it as a speaker. Each wav is written atomically and an existing one is kept, so a stopped run
resumes where it stopped.
"""
from __future__ import annotations

import json
import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from codectts.data.manifest import Utterance, read_corpus, write_jsonl
from codectts.data.merge import leading_hours
from codectts.errors import ConfigError, DataError
from codectts.fileio import atomic_write_bytes

log = logging.getLogger(__name__)
MAX_SEMITONES = 12.0  # past an octave the copy is a cartoon, not a speaker


def shift_wav(wav: np.ndarray, sr: int, semitones: float) -> np.ndarray:
    """Mono float audio [T] shifted by `semitones` (pitch and formants), same length."""
    import librosa

    out = librosa.effects.pitch_shift(np.asarray(wav, dtype=np.float32), sr=sr, n_steps=semitones,
                                      res_type="soxr_hq")
    peak = float(np.abs(out).max(initial=0.0))
    return out / peak * 0.99 if peak > 0.99 else out  # the shift can overshoot the source's peak


def shift_corpus(data: str | Path, out: str | Path, semitones: float, hours: float | None = None,
                 progress: bool = True) -> dict:
    """Write out/wavs/*.wav, out/manifest.jsonl, out/dev.jsonl and out/corpus.json; returns the summary.
    `hours` keeps the leading train rows up to that much audio (all dev rows are kept)."""
    from tqdm import tqdm

    from codectts.audio.io import load_audio, save_wav

    if not np.isfinite(semitones) or semitones == 0 or abs(semitones) > MAX_SEMITONES:
        raise ConfigError(f"--semitones must be non-zero and within +-{MAX_SEMITONES:g}, got {semitones}")
    out = Path(out)
    if out.resolve() == Path(data).resolve():
        raise ConfigError("--out must be a new folder, not the source corpus")
    if hours is not None and hours <= 0:
        raise ConfigError(f"--hours must be positive, got {hours}")
    train, root = read_corpus(data, "train")
    splits = {"train": (leading_hours(train, hours), root)}
    try:
        splits["dev"] = read_corpus(data, "dev")
    except DataError:  # a corpus without a dev split shifts its train split only
        pass
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    counts = {"written": 0, "kept": 0}
    for split, (utts, root) in splits.items():
        rows: list[Utterance] = []
        for u in tqdm(utts, desc=f"shift {split}", unit="utt", disable=not progress):
            dst = out / "wavs" / f"{u.id}.wav"
            if dst.exists():
                counts["kept"] += 1
            else:
                wav, sr = load_audio(u.audio_path(root))
                save_wav(dst, shift_wav(wav, sr, semitones), sr)
                counts["written"] += 1
            rows.append(replace(u, audio=f"wavs/{u.id}.wav"))
        write_jsonl(out / ("manifest.jsonl" if split == "train" else "dev.jsonl"), rows)
        counts[f"{split}_utterances"] = len(rows)
    summary = {"source": str(data), "semitones": semitones, "hours": hours, **counts}
    atomic_write_bytes(out / "corpus.json", (json.dumps(summary, indent=1) + "\n").encode())
    log.info("shifted %s by %+g semitones into %s: %s", data, semitones, out, counts)
    return summary

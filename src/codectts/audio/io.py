"""Read any wav/flac/ogg as mono float32 at a requested rate; write wavs atomically."""
from __future__ import annotations

import io
import os

import numpy as np
import soundfile as sf
import soxr

from codectts.errors import AudioError
from codectts.fileio import atomic_write_bytes


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """High-quality resampling (soxr) of a mono float array; a no-op when the rates agree."""
    if sr_in <= 0 or sr_out <= 0:
        raise AudioError(f"sample rates must be positive, got {sr_in} -> {sr_out}")
    wav = np.asarray(wav, dtype=np.float32)
    if sr_in == sr_out or wav.size == 0:
        return wav
    return soxr.resample(wav, sr_in, sr_out, quality="HQ").astype(np.float32)


def to_mono(wav: np.ndarray) -> np.ndarray:
    """[T] or [T, C] -> [T], averaging channels."""
    wav = np.asarray(wav, dtype=np.float32)
    return wav.mean(axis=1) if wav.ndim == 2 else wav


def check_finite(wav: np.ndarray, where: str) -> np.ndarray:
    if not np.isfinite(wav).all():
        raise AudioError(f"{where}: audio holds NaN or Inf samples")
    return wav


def load_audio(
    path: str | os.PathLike | bytes, sr: int | None = None, allow_empty: bool = False
) -> tuple[np.ndarray, int]:
    """Load `path` (or raw file bytes) as mono float32; resample to `sr` when given.

    Returns (wav [T], sample_rate). Raises AudioError naming the file for anything unreadable,
    empty, or non-finite, so callers never see a traceback from deep inside libsndfile.
    """
    name = "<bytes>" if isinstance(path, bytes) else str(path)
    if not isinstance(path, bytes) and not os.path.exists(path):
        raise AudioError(f"{name}: no such file")
    try:
        src = io.BytesIO(path) if isinstance(path, bytes) else path
        wav, file_sr = sf.read(src, dtype="float32", always_2d=False)
    except FileNotFoundError:
        raise AudioError(f"{name}: no such file") from None
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise AudioError(f"{name}: cannot read audio ({e})") from None
    wav = check_finite(to_mono(wav), name)
    if wav.size == 0 and not allow_empty:
        raise AudioError(f"{name}: audio is empty (0 samples)")
    if sr is not None and sr != file_sr:
        wav, file_sr = resample(wav, file_sr, sr), sr
    return wav, int(file_sr)


def wav_bytes(wav: np.ndarray, sr: int, subtype: str = "PCM_16", fmt: str = "WAV") -> bytes:
    """Encode a mono float array to an in-memory file (WAV by default; FLAC/OGG where libsndfile has them)."""
    wav = check_finite(np.asarray(wav, dtype=np.float32).reshape(-1), "save")
    if subtype.startswith("PCM"):
        wav = np.clip(wav, -1.0, 1.0)
    buf = io.BytesIO()
    sf.write(buf, wav, sr, subtype=subtype, format=fmt)
    return buf.getvalue()


def save_wav(path: str | os.PathLike, wav: np.ndarray, sr: int, subtype: str = "PCM_16") -> None:
    """Save mono audio as 16-bit (default) or float ("FLOAT") wav, atomically."""
    atomic_write_bytes(path, wav_bytes(wav, sr, subtype=subtype))

"""Codec / vocoder metrics on a (reference, test) pair: how far is the decoded audio from the original?

`compare(reference, test, sr)` returns one flat dict:
  mel_l1, mel_mse    log-mel distance with the "vocoder" MelConfig (22.05 kHz, 80 mels, natural log);
                     0 for identical audio
  mrstft             multi-resolution STFT distance (spectral convergence + log-magnitude L1, averaged
                     over 3 window sizes; 0 for identical audio), at 22.05 kHz like the mel
  si_sdr             scale-invariant SDR in dB, capped at +-SI_SDR_CAP_DB (identical -> the cap)
  pesq_wb            wide-band PESQ (1.04..4.64), None where PESQ refuses (silence, < 0.25 s)
  stoi               short-time objective intelligibility (0..1), None for < STOI_MIN_SECONDS
  length_diff_s      test minus reference duration (the pair is trimmed to the shorter one)

SI-SDR, PESQ and STOI use 16 kHz-resampled audio (PESQ-wb's rate). All metrics compare samples at
the same time index: they assume the two signals are time-aligned (a codec's decode of its own
input is); a constant delay makes SI-SDR and PESQ look much worse than the audio sounds.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass

import numpy as np
import torch

from codectts.audio.io import resample
from codectts.audio.mel import MelSpectrogram, mel_preset
from codectts.errors import AudioError

log = logging.getLogger(__name__)

METRIC_SAMPLE_RATE = 16000  # PESQ-wb, STOI and SI-SDR
SI_SDR_CAP_DB = 100.0
STOI_MIN_SECONDS = 0.4  # pystoi needs 30 frames of 384 samples at 10 kHz after removing silence
MAG_FLOOR = 1e-5


@dataclass(frozen=True)
class STFTResolution:
    n_fft: int
    hop_length: int
    win_length: int


# Short, medium and long windows: transients, the vocoder's own frame, and pitch harmonics.
MRSTFT_RESOLUTIONS = (STFTResolution(512, 128, 512), STFTResolution(1024, 256, 1024),
                      STFTResolution(2048, 512, 2048))


def _as_mono(wav: np.ndarray, what: str) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim == 2 and 1 in wav.shape:
        wav = wav.reshape(-1)
    if wav.ndim != 1:
        raise AudioError(f"{what}: expected mono audio [T], got shape {wav.shape}")
    if wav.size == 0:
        raise AudioError(f"{what}: audio is empty")
    if not np.isfinite(wav).all():
        raise AudioError(f"{what}: audio holds NaN or Inf samples")
    return wav


def _aligned(ref: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    n = min(len(ref), len(test))
    return ref[:n], test[:n]


def mrstft_distance(ref: np.ndarray, test: np.ndarray,
                    resolutions: tuple[STFTResolution, ...] = MRSTFT_RESOLUTIONS) -> float:
    """Mean over resolutions of ||S_r - S_t||_F / ||S_r||_F + mean |log S_r - log S_t| (magnitudes)."""
    r, t = (torch.from_numpy(np.ascontiguousarray(x)) for x in _aligned(ref, test))
    total = 0.0
    for res in resolutions:
        window = torch.hann_window(res.win_length)
        mags = []
        for x in (r, t):
            if x.numel() < res.n_fft:  # too short for this window: pad with silence
                x = torch.nn.functional.pad(x, (0, res.n_fft - x.numel()))
            spec = torch.stft(x, res.n_fft, res.hop_length, res.win_length, window, return_complex=True)
            mags.append(spec.abs().clamp_min(MAG_FLOOR))
        sr_, st_ = mags
        conv = torch.linalg.norm(sr_ - st_) / torch.linalg.norm(sr_).clamp_min(MAG_FLOOR)
        log_l1 = (sr_.log() - st_.log()).abs().mean()
        total += float(conv + log_l1)
    return total / len(resolutions)


def si_sdr(ref: np.ndarray, test: np.ndarray) -> float:
    """Scale-invariant signal-to-distortion ratio in dB (zero-mean; capped at +-SI_SDR_CAP_DB)."""
    r, t = (x.astype(np.float64) - x.mean() for x in _aligned(ref, test))
    energy = float(np.dot(r, r))
    if energy == 0.0:
        return -SI_SDR_CAP_DB  # a silent reference has no signal to recover
    target = (np.dot(t, r) / energy) * r
    noise = t - target
    t_e, n_e = float(np.dot(target, target)), float(np.dot(noise, noise))
    if t_e == 0.0:  # silent or orthogonal test signal: nothing of the reference is there
        return -SI_SDR_CAP_DB
    if n_e == 0.0:
        return SI_SDR_CAP_DB
    return float(np.clip(10.0 * math.log10(t_e / n_e), -SI_SDR_CAP_DB, SI_SDR_CAP_DB))


def pesq_wb(ref16: np.ndarray, test16: np.ndarray) -> float | None:
    """Wide-band PESQ at 16 kHz, or None where the ITU algorithm refuses the input (silence, too short)."""
    from pesq import PesqError, pesq

    if not (np.abs(ref16).max() > 0 and np.abs(test16).max() > 0):
        return None  # PESQ divides by the peak: silence is refused up front
    try:
        return float(pesq(METRIC_SAMPLE_RATE, ref16, test16, "wb"))
    except (PesqError, ValueError) as e:  # NoUtterancesError, BufferTooShortError, ...
        log.debug("PESQ refused the pair: %s", e)
        return None


def stoi(ref16: np.ndarray, test16: np.ndarray) -> float | None:
    """STOI (classic, not extended), or None for clips too short to score."""
    from pystoi import stoi as _stoi

    if len(ref16) < STOI_MIN_SECONDS * METRIC_SAMPLE_RATE or not np.abs(ref16).max() > 0:
        return None
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pystoi warns (and returns ~0) when silence removal leaves < 30 frames
        value = float(_stoi(ref16.astype(np.float64), test16.astype(np.float64), METRIC_SAMPLE_RATE, extended=False))
    return value if math.isfinite(value) else None


def compare(reference_wav: np.ndarray, test_wav: np.ndarray, sr: int) -> dict:
    """All codec metrics for one pair at sample rate `sr` (see the module docstring for each field)."""
    ref, test = _as_mono(reference_wav, "reference"), _as_mono(test_wav, "test")
    mel_cfg = mel_preset("vocoder")
    r22, t22 = _aligned(resample(ref, sr, mel_cfg.sample_rate), resample(test, sr, mel_cfg.sample_rate))
    mel = MelSpectrogram(mel_cfg)
    with torch.no_grad():
        m = mel(torch.from_numpy(np.stack([r22, t22])))  # [2, n_mels, F]
    diff = m[0] - m[1]
    r16, t16 = _aligned(resample(ref, sr, METRIC_SAMPLE_RATE), resample(test, sr, METRIC_SAMPLE_RATE))
    return {
        "mel_l1": float(diff.abs().mean()),
        "mel_mse": float(diff.pow(2).mean()),
        "mrstft": mrstft_distance(r22, t22),
        "si_sdr": si_sdr(r16, t16),
        "pesq_wb": pesq_wb(r16, t16),
        "stoi": stoi(r16, t16),
        "length_diff_s": (len(test) - len(ref)) / sr,
    }


def mean_metrics(rows: list[dict]) -> dict:
    """Average each metric over rows, skipping None (refused PESQ/STOI); reports how many were scored."""
    out: dict = {"n": len(rows)}
    for key in (rows[0] if rows else {}):
        vals = [r[key] for r in rows if r.get(key) is not None]
        out[key] = float(np.mean(vals)) if vals else None
        if len(vals) != len(rows):
            out[f"{key}_scored"] = len(vals)
    return out

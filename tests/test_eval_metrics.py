"""Codec metrics on signals with known answers: identical -> perfect, more noise -> monotonically worse."""
import numpy as np
import pytest

from codectts.errors import AudioError
from codectts.eval.metrics import SI_SDR_CAP_DB, compare, mean_metrics, mrstft_distance, si_sdr

SR = 16000


def speechlike(seconds: float = 2.0, seed: int = 0) -> np.ndarray:
    """A gliding harmonic tone with syllable-like on/off envelope: enough for PESQ's voice-activity detection."""
    t = np.arange(int(seconds * SR)) / SR
    f0 = 120 + 20 * np.sin(2 * np.pi * 0.7 * t + seed)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 20))
    env = (np.sin(2 * np.pi * 3 * t) > -0.3) * np.abs(np.sin(2 * np.pi * 1.5 * t))
    return (0.3 * x * env / np.abs(x).max()).astype(np.float32)


def noisy(x: np.ndarray, level: float, seed: int = 1) -> np.ndarray:
    return (x + level * np.random.default_rng(seed).standard_normal(len(x))).astype(np.float32)


def test_identical_is_perfect():
    x = speechlike()
    m = compare(x, x, SR)
    assert m["mel_l1"] == 0 and m["mel_mse"] == 0 and m["mrstft"] == 0
    assert m["si_sdr"] == SI_SDR_CAP_DB
    assert m["pesq_wb"] > 4.5 and m["stoi"] > 0.999
    assert m["length_diff_s"] == 0


def test_more_noise_is_worse_on_every_metric():
    x = speechlike()
    a, b = compare(x, noisy(x, 0.001), SR), compare(x, noisy(x, 0.1), SR)
    for key in ("mel_l1", "mel_mse", "mrstft"):
        assert 0 < a[key] < b[key], key
    for key in ("si_sdr", "pesq_wb", "stoi"):
        assert a[key] > b[key], key
    assert b["si_sdr"] < 5 and a["si_sdr"] > 25


def test_si_sdr_is_scale_invariant():
    x = speechlike()
    assert si_sdr(x, 0.25 * x) == SI_SDR_CAP_DB
    assert si_sdr(x, -x) == SI_SDR_CAP_DB  # polarity is a scale too (standard SI-SDR)
    assert si_sdr(x, np.zeros_like(x)) == -SI_SDR_CAP_DB
    n = noisy(np.zeros_like(x), 1.0)
    assert si_sdr(x, n) < -20


def test_lengths_are_aligned_and_reported():
    x = speechlike()
    m = compare(x, np.concatenate([x, np.zeros(800, np.float32)]), SR)
    assert m["length_diff_s"] == pytest.approx(800 / SR)
    assert m["si_sdr"] == SI_SDR_CAP_DB  # trimmed to the shorter signal


def test_other_sample_rates_resampled():
    x = speechlike()
    m = compare(x, x, 24000)  # same samples declared at 24 kHz: still identical
    assert m["mel_l1"] == 0 and m["pesq_wb"] > 4.5


def test_silence_and_short_clips_do_not_crash():
    z = np.zeros(SR, np.float32)
    m = compare(z, z, SR)
    assert m["pesq_wb"] is None and m["stoi"] is None and m["mel_l1"] == 0
    short = speechlike(0.1)
    m = compare(short, short, SR)
    assert m["pesq_wb"] is None and m["stoi"] is None and m["mrstft"] == 0


def test_bad_input_raises():
    with pytest.raises(AudioError):
        compare(np.zeros(0, np.float32), np.zeros(10, np.float32), SR)
    with pytest.raises(AudioError):
        compare(np.full(100, np.nan, np.float32), np.zeros(100, np.float32), SR)
    with pytest.raises(AudioError):
        compare(np.zeros((2, 100), np.float32), np.zeros(100, np.float32), SR)


def test_mrstft_symmetric_in_log_term_and_zero_only_when_equal():
    x = speechlike(1.0)
    assert mrstft_distance(x, x) == 0
    assert mrstft_distance(x, 0.5 * x) > 0


def test_mean_metrics_skips_refused_values():
    rows = [{"pesq_wb": 3.0, "stoi": 0.9}, {"pesq_wb": None, "stoi": 0.7}]
    m = mean_metrics(rows)
    assert m["pesq_wb"] == 3.0 and m["pesq_wb_scored"] == 1 and m["stoi"] == pytest.approx(0.8)

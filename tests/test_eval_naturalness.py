"""DNSMOS on small synthetic clips: clean voiced sound rates above the same sound in noise; silence is unscored."""
import numpy as np
import pytest

pytest.importorskip("speechmos")

from codectts.eval.naturalness import DNSMOS, DNSMOS_KEYS, dnsmos_summary, format_dnsmos  # noqa: E402

SR = 22050


def voiced(seconds: float = 1.5, sr: int = SR) -> np.ndarray:
    """A vowel-like harmonic tone with a gliding pitch and a syllable-rate envelope."""
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(120 + 20 * np.sin(2 * np.pi * 0.7 * t)) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 30)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (0.2 * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def scorer():
    return DNSMOS()


def test_noise_lowers_every_p835_rating(scorer):
    clean = voiced()
    noisy = clean + 0.1 * np.random.default_rng(0).standard_normal(len(clean)).astype(np.float32)
    a, b = scorer.score(clean, SR), scorer.score(noisy, SR)
    assert set(DNSMOS_KEYS) <= set(a) and all(1.0 <= a[k] <= 5.0 for k in DNSMOS_KEYS)
    assert b["bak"] < a["bak"] - 1.0 and b["ovrl"] < a["ovrl"] - 0.5 and b["sig"] < a["sig"]
    assert a["clipped_fraction"] == 0.0


def test_rate_independent_and_clipping_reported(scorer):
    x = voiced()
    at16 = scorer.score(voiced(sr=16000), 16000)
    at22 = scorer.score(x, SR)
    assert abs(at16["ovrl"] - at22["ovrl"]) < 0.15  # same sound, resampled inside
    loud = scorer.score(x * 8, SR)  # speechmos refuses samples outside [-1, 1]: clipped, counted
    assert loud is not None and loud["clipped_fraction"] > 0.01


def test_silent_empty_and_tiny_clips_are_unscored(scorer):
    assert scorer.score(np.zeros(SR, np.float32), SR) is None
    assert scorer.score(np.zeros(0, np.float32), SR) is None
    assert scorer.score(voiced(0.02), SR) is None


def test_summary_counts_unscored():
    recs = [{"dnsmos": {"sig": 3.0, "bak": 4.0, "ovrl": 2.0, "p808": 3.0}}, {"dnsmos": None},
            {"dnsmos": {"sig": 4.0, "bak": 4.0, "ovrl": 3.0, "p808": 3.5}}]
    s = dnsmos_summary(recs)
    assert s["ovrl"] == 2.5 and s["n"] == 2 and s["unscored"] == 1
    assert "OVRL 2.50" in format_dnsmos(s)
    assert dnsmos_summary([{"x": 1}]) is None  # not rated at all: no column
    assert dnsmos_summary([{"dnsmos": None}])["ovrl"] is None and format_dnsmos(None) == "DNSMOS -"

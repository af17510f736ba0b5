"""Naturalness proxy: DNSMOS (Reddy et al. 2021/2022) through the `speechmos` package.

`DNSMOS.score(wav, sr)` returns the P.835 ratings SIG (speech), BAK (background), OVRL (overall)
and the P.808 MOS, each on 1..5, from the ONNX models that ship inside the speechmos wheel (no
download; onnxruntime on CPU). DNSMOS was trained on noisy and enhanced human speech, not on TTS:
its numbers are only read side by side with the teacher and the ground truth of the same run, never
as an absolute MOS. Clips are resampled to 16 kHz. A clip under the models' 9.01 s input is tiled
to exactly that length and rated once (speechmos doubles it until it is long enough and averages
up to 8 overlapping windows: the same figure for a few times the cost); longer clips are rated
in 9 s windows with a 1 s hop, as in Microsoft's DNSMOS script.

Silent or empty audio gets no score (None), never a crash or an infinite loop (speechmos tiles an
empty array forever); samples outside [-1, 1] are clipped first (speechmos refuses them) and the
caller is told how many there were (`clipped_fraction`).
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import numpy as np

from codectts.audio.io import resample
from codectts.errors import ConfigError

log = logging.getLogger(__name__)

DNSMOS_SAMPLE_RATE = 16000
INPUT_SECONDS = 9.01  # the P.835 model's input (speechmos.dnsmos.INPUT_LENGTH)
DNSMOS_KEYS = ("sig", "bak", "ovrl", "p808")
SILENCE_PEAK = 1e-4  # below this peak amplitude (-80 dBFS) a clip is "silent": nothing to rate
INSTALL_HINT = "pip install 'codectts[eval]' (speechmos)"


class DNSMOS:
    """P.835 + P.808 DNSMOS with onnxruntime limited to `threads` (default 1: the machine is shared)."""

    def __init__(self, threads: int = 1):
        try:
            import onnxruntime as ort
            import speechmos.dnsmos as sd
        except ImportError as e:
            raise ConfigError(f"DNSMOS needs speechmos: {INSTALL_HINT}") from e
        models = Path(sd.__file__).resolve().parent / "dnsmos_models"
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = opts.inter_op_num_threads = max(1, threads)
        self._impl = sd.DNSMOS.__new__(sd.DNSMOS)  # its __init__ makes sessions with all cores; make ours
        self._impl.primary_model_path = str(models / "sig_bak_ovr.onnx")
        self._impl.onnx_sess = ort.InferenceSession(self._impl.primary_model_path, sess_options=opts,
                                                    providers=["CPUExecutionProvider"])
        self._impl.p808_onnx_sess = ort.InferenceSession(str(models / "model_v8.onnx"), sess_options=opts,
                                                         providers=["CPUExecutionProvider"])

    def score(self, wav: np.ndarray, sr: int) -> dict | None:
        """{"sig", "bak", "ovrl", "p808", "clipped_fraction"} for a mono float clip, or None if it is silent."""
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        if wav.size == 0 or not np.isfinite(wav).all() or float(np.abs(wav).max()) < SILENCE_PEAK:
            return None
        clipped = float(np.mean(np.abs(wav) > 1.0))
        x = np.clip(resample(wav, sr, DNSMOS_SAMPLE_RATE), -1.0, 1.0)
        if x.size < DNSMOS_SAMPLE_RATE // 10:  # < 0.1 s: too short to mean anything once tiled
            return None
        n = int(INPUT_SECONDS * DNSMOS_SAMPLE_RATE)
        if x.size < n:
            x = np.tile(x, -(-n // x.size))[:n]
        r = self._impl(x, DNSMOS_SAMPLE_RATE, False)
        out = {"sig": float(r["sig_mos"]), "bak": float(r["bak_mos"]), "ovrl": float(r["ovrl_mos"]),
               "p808": float(r["p808_mos"]), "clipped_fraction": clipped}
        return out if all(math.isfinite(out[k]) for k in DNSMOS_KEYS) else None


_default: DNSMOS | None = None


def default_dnsmos() -> DNSMOS:
    """One shared scorer per process (loading the two ONNX models takes ~0.5 s)."""
    global _default
    if _default is None:
        _default = DNSMOS()
    return _default


def dnsmos_summary(records: list[dict], key: str = "dnsmos") -> dict | None:
    """Mean of each DNSMOS rating over the records that have one; `n` scored and `unscored` (silent)."""
    scores = [r[key] for r in records if r.get(key)]
    if not records or (not scores and all(key not in r for r in records)):
        return None
    out: dict = {k: float(np.mean([s[k] for s in scores])) if scores else None for k in DNSMOS_KEYS}
    out.update(n=len(scores), unscored=len(records) - len(scores))
    return out


def format_dnsmos(s: dict | None) -> str:
    if not s or s.get("ovrl") is None:
        return "DNSMOS -"
    return f"DNSMOS OVRL {s['ovrl']:.2f} SIG {s['sig']:.2f} BAK {s['bak']:.2f} P808 {s['p808']:.2f}"

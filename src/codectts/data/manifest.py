"""Utterance records and their two on-disk forms: LJSpeech metadata.csv and JSONL manifests."""
from __future__ import annotations

import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

from codectts.errors import DataError
from codectts.fileio import atomic_write_bytes

log = logging.getLogger(__name__)


@dataclass
class Utterance:
    id: str
    audio: str  # path, relative to the manifest's folder or absolute
    text: str
    normalized: str = ""
    speaker: str = "0"
    duration: float = 0.0  # seconds
    phonemes: list[str] = field(default_factory=list)  # teacher phonemes incl. BOS/EOS ("^", "$")
    durations: list[int] = field(default_factory=list)  # frames per phoneme at `hop` samples
    hop: int = 0
    sample_rate: int = 0

    def to_json(self) -> str:
        d = {k: v for k, v in asdict(self).items() if v not in ("", [], 0, 0.0) or k in ("id", "audio", "text")}
        return json.dumps(d, ensure_ascii=False)

    @classmethod
    def from_dict(cls, d: dict) -> Utterance:
        known = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        for key in ("id", "audio", "text"):
            if key not in known:
                raise DataError(f"manifest record lacks {key!r}: {str(d)[:80]}")
        known["id"], known["speaker"] = str(known["id"]), str(known.get("speaker", "0"))
        return cls(**known)

    def audio_path(self, root: str | os.PathLike) -> Path:
        p = Path(self.audio)
        return p if p.is_absolute() else Path(root) / p


def read_jsonl(path: str | os.PathLike, strict: bool = False) -> list[Utterance]:
    """Read a JSONL manifest; malformed lines are skipped with a logged count (or raise when strict)."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such manifest")
    out, bad = [], 0
    with open(path, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").strip()
                if not line:
                    continue
                out.append(Utterance.from_dict(json.loads(line)))
            except (UnicodeDecodeError, json.JSONDecodeError, DataError, TypeError) as e:
                if strict:
                    raise DataError(f"{path}:{n}: {e}") from None
                bad += 1
    if bad:
        log.warning("%s: skipped %d malformed line(s)", path, bad)
    return out


def write_jsonl(path: str | os.PathLike, utts: list[Utterance]) -> None:
    atomic_write_bytes(path, "".join(u.to_json() + "\n" for u in utts).encode("utf-8"))


def read_ljspeech(folder: str | os.PathLike, strict: bool = False) -> list[Utterance]:
    """LJSpeech layout: metadata.csv lines `id|text|normalized text` (third field optional), wavs/ID.wav."""
    folder = Path(folder)
    meta = folder / "metadata.csv"
    if not meta.exists():
        raise DataError(f"{folder}: no metadata.csv (expected LJSpeech layout: metadata.csv + wavs/)")
    out, bad = [], 0
    with open(meta, "rb") as f:
        for n, raw in enumerate(f, 1):
            try:
                line = raw.decode("utf-8").rstrip("\r\n")
            except UnicodeDecodeError:
                if strict:
                    raise DataError(f"{meta}:{n}: not UTF-8") from None
                bad += 1
                continue
            if not line.strip():
                continue
            parts = line.split("|")
            if len(parts) < 2 or not parts[0].strip() or not parts[1].strip():
                if strict:
                    raise DataError(f"{meta}:{n}: expected 'id|text[|normalized]', got {line[:60]!r}")
                bad += 1
                continue
            uid = parts[0].strip()
            out.append(Utterance(id=uid, audio=f"wavs/{uid}.wav", text=parts[1].strip(),
                                 normalized=parts[2].strip() if len(parts) > 2 else ""))
    if bad:
        log.warning("%s: skipped %d malformed line(s)", meta, bad)
    return out


def write_ljspeech(folder: str | os.PathLike, utts: list[Utterance]) -> None:
    lines = []
    for u in utts:
        text, norm = (s.replace("|", " ").replace("\n", " ") for s in (u.text, u.normalized or u.text))
        lines.append(f"{u.id}|{text}|{norm}\n")
    atomic_write_bytes(Path(folder) / "metadata.csv", "".join(lines).encode("utf-8"))


def read_corpus(path: str | os.PathLike, split: str = "train") -> tuple[list[Utterance], Path]:
    """A corpus folder (manifest.jsonl / dev.jsonl, else LJSpeech metadata.csv) or a .jsonl file.

    Returns the utterances and the folder their audio paths are relative to.
    """
    path = Path(path)
    if path.is_file():
        return read_jsonl(path), path.parent
    name = {"train": "manifest.jsonl", "dev": "dev.jsonl"}.get(split, f"{split}.jsonl")
    if (path / name).exists():
        return read_jsonl(path / name), path
    if split == "train" and (path / "metadata.csv").exists():
        return read_ljspeech(path), path
    raise DataError(f"{path}: no {name}" + (" or metadata.csv" if split == "train" else ""))

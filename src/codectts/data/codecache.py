"""Pre-tokenized corpora ("code caches"): a corpus encoded once by a codec, read lazily by training.

On disk (format_version 1):
    TOKDIR/cache.json      {"format_version": 1, "codec": codec.spec(), "n_codebooks", "codebook_size",
                            "frame_rate", "sample_rate", "source": corpus folder}
    TOKDIR/index.jsonl     (training split; dev.jsonl holds the held-out split) one record per utterance:
                           id, text, normalized, speaker, n_frames, file,
                           and when the corpus has teacher alignments: phonemes + durations re-timed
                           to the codec frame rate (they sum exactly to n_frames)
    TOKDIR/codes/ID.npy    int16 [K, n_frames] (int32 when a codebook has more than 32,767 entries)
Written per utterance (atomic), so an interrupted extraction resumes where it stopped.
"""

from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from codectts.errors import DataError
from codectts.fileio import atomic_write_bytes

log = logging.getLogger(__name__)
FORMAT_VERSION = 1


@dataclass
class CacheEntry:
    id: str
    text: str
    n_frames: int
    file: str
    normalized: str = ""
    speaker: str = "0"
    phonemes: list[str] = field(default_factory=list)
    durations: list[int] = field(default_factory=list)  # at the codec frame rate

    @classmethod
    def from_dict(cls, d: dict) -> CacheEntry:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


class CodeCache:
    """Read side: `len(cache)`, `cache.entries[i]`, `cache.codes(i) -> LongTensor [K, F]` (loaded lazily)."""

    def __init__(self, root: str | Path, split: str = "train"):
        self.root = Path(root)
        self.split = split
        meta_file = self.root / "cache.json"
        if not meta_file.exists():
            raise DataError(f"{self.root}: not a code cache (no cache.json); run `codectts codes extract`")
        self.meta = json.loads(meta_file.read_text(encoding="utf-8"))
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise DataError(f"{meta_file}: unsupported format_version {self.meta.get('format_version')}")
        self.entries: list[CacheEntry] = []
        index = self.root / index_name(split)
        if index.exists():
            for n, line in enumerate(index.read_text(encoding="utf-8").splitlines(), 1):
                if line.strip():
                    try:
                        self.entries.append(CacheEntry.from_dict(json.loads(line)))
                    except (json.JSONDecodeError, TypeError) as e:
                        raise DataError(f"{index}:{n}: {e}") from None

    n_codebooks = property(lambda self: int(self.meta["n_codebooks"]))
    codebook_size = property(lambda self: int(self.meta["codebook_size"]))
    frame_rate = property(lambda self: float(self.meta["frame_rate"]))

    def __len__(self) -> int:
        return len(self.entries)

    def codes(self, i: int) -> torch.Tensor:
        e = self.entries[i]
        arr = np.load(self.root / e.file)
        if arr.ndim != 2 or arr.shape[1] != e.n_frames:
            raise DataError(f"{self.root / e.file}: shape {arr.shape} disagrees with index n_frames {e.n_frames}")
        return torch.from_numpy(arr.astype(np.int64))

    def lengths(self) -> list[int]:
        return [e.n_frames for e in self.entries]


def write_codes(root: Path, uid: str, codes: np.ndarray, codebook_size: int) -> str:
    dtype = np.int16 if codebook_size <= 32767 else np.int32
    buf = io.BytesIO()
    np.save(buf, codes.astype(dtype))
    rel = f"codes/{uid}.npy"
    atomic_write_bytes(root / rel, buf.getvalue())
    return rel


def write_cache_meta(
    root: Path, codec_spec: dict, n_codebooks: int, codebook_size: int, frame_rate: float, sample_rate: int, source: str
) -> None:
    meta = {
        "format_version": FORMAT_VERSION,
        "codec": codec_spec,
        "n_codebooks": n_codebooks,
        "codebook_size": codebook_size,
        "frame_rate": frame_rate,
        "sample_rate": sample_rate,
        "source": source,
    }
    root.mkdir(parents=True, exist_ok=True)
    existing = root / "cache.json"
    if existing.exists():
        old = json.loads(existing.read_text(encoding="utf-8"))
        if old.get("codec") != codec_spec:
            raise DataError(f"{root}: already holds codes of another codec; use a new --out folder")
    atomic_write_bytes(existing, json.dumps(meta, indent=1).encode())


def index_name(split: str) -> str:
    return "index.jsonl" if split == "train" else f"{split}.jsonl"


def write_index(root: Path, entries: list[CacheEntry], split: str = "train") -> None:
    from dataclasses import asdict

    atomic_write_bytes(
        root / index_name(split),
        "".join(json.dumps(asdict(e), ensure_ascii=False) + "\n" for e in entries).encode("utf-8"),
    )

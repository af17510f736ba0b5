"""Speaker vectors of a code cache's utterances: what a cloning model is conditioned on.

On disk: CACHE/speaker_vectors/ID.npy, float16 [V]: the d-vector (`codectts.eval.speaker`, resemblyzer,
V = 256, unit norm) of the utterance's own audio. Per utterance, not per speaker: a model trained on
them reads the voice from one clip's vector, which is what it gets when it clones a reference clip.
Written per utterance (atomic), so an interrupted run resumes; the audio is found through the cache's
source corpus (`cache.json` "source").
"""
from __future__ import annotations

import io
import logging
from collections.abc import Callable
from pathlib import Path

import numpy as np

from codectts.errors import AudioError, DataError
from codectts.fileio import atomic_write_bytes

log = logging.getLogger(__name__)
VECTORS_DIR = "speaker_vectors"
Embed = Callable[[np.ndarray, int], np.ndarray]


def vector_path(root: str | Path, uid: str) -> Path:
    return Path(root) / VECTORS_DIR / f"{uid}.npy"


def extract_speaker_vectors(codes: str | Path, data: str | Path | None = None, embed: Embed | None = None,
                            progress: bool = True) -> dict[str, int]:
    """Write a vector for every utterance of the cache's train and dev splits that has none yet.
    `data`: the corpus folder (default: the one the cache was extracted from). Utterances the encoder
    refuses (e.g. under 0.3 s of voiced audio) are counted as `failed` and have no vector."""
    from tqdm import tqdm

    from codectts.audio.io import load_audio
    from codectts.data.codecache import CodeCache
    from codectts.data.manifest import read_corpus

    if embed is None:
        from codectts.eval.speaker import embed
    cache = CodeCache(codes, "train")
    corpus = Path(data) if data is not None else Path(cache.meta.get("source", ""))
    counts = {"written": 0, "existing": 0, "failed": 0}
    for split in ("train", "dev"):
        entries = cache.entries if split == "train" else CodeCache(codes, "dev").entries
        if not entries:
            continue
        try:
            utts, folder = read_corpus(corpus, split)
        except DataError as e:
            raise DataError(f"{codes}: cannot find the audio of its {split} split ({e}); pass --data") from None
        audio = {u.id: folder / u.audio for u in utts}
        for e in tqdm(entries, desc=f"speaker vectors ({split})", unit="utt", disable=not progress):
            out = vector_path(codes, e.id)
            if out.exists():
                counts["existing"] += 1
                continue
            if e.id not in audio:
                raise DataError(f"{corpus}: no utterance {e.id!r} of the code cache {codes}")
            try:
                wav, sr = load_audio(audio[e.id])
                vec = np.asarray(embed(wav, sr), dtype=np.float32).reshape(-1)
            except AudioError as err:
                log.warning("no speaker vector for %s: %s", e.id, err)
                counts["failed"] += 1
                continue
            buf = io.BytesIO()
            np.save(buf, vec.astype(np.float16))
            atomic_write_bytes(out, buf.getvalue())
            counts["written"] += 1
    return counts


def read_speaker_vector(root: str | Path, uid: str) -> np.ndarray | None:
    """The utterance's vector (float32 [V]), or None when it has none."""
    p = vector_path(root, uid)
    if not p.exists():
        return None
    v = np.load(p).astype(np.float32)
    if v.ndim != 1 or not np.isfinite(v).all():
        raise DataError(f"{p}: not a finite speaker vector (shape {v.shape})")
    return v


def speaker_means(vectors, speakers) -> dict[str, list[float]]:
    """Each speaker's mean unit vector from per-utterance `vectors` [V] and their `speakers` (names): how a
    cloning model speaks as a training speaker by name, with no clip."""
    by: dict[str, list[np.ndarray]] = {}
    for v, s in zip(vectors, speakers, strict=True):
        by.setdefault(str(s), []).append(v / np.linalg.norm(v))
    out = {}
    for name, vs in by.items():
        m = np.mean(vs, axis=0)
        out[name] = [round(float(x), 6) for x in m / np.linalg.norm(m)]
    return out


def vector_size(root: str | Path) -> int:
    """V of the cache's speaker vectors; DataError naming the command when there are none."""
    folder = Path(root) / VECTORS_DIR
    first = next(iter(sorted(folder.glob("*.npy"))), None) if folder.is_dir() else None
    if first is None:
        raise DataError(f"{root}: no speaker vectors; run `codectts codes speaker-vectors --codes {root}`")
    return int(np.load(first).shape[0])

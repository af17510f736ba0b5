"""Teacher phoneme durations and their conversion between frame rates.

Durations are integer frame counts per phoneme. Converting to another frame rate rounds the
*cumulative* boundaries, never each duration alone, so the total is exact (it equals the target
frame count) and no rounding error accumulates along the utterance.
"""
from __future__ import annotations

import numpy as np

from codectts.errors import DataError


def convert_durations(durations, src_rate: float, dst_rate: float, total: int | None = None) -> np.ndarray:
    """Re-time integer durations from `src_rate` frames/s to `dst_rate` frames/s.

    `total` fixes the target length (e.g. the codec's frame count of the same audio); by default it
    is round(sum * dst_rate / src_rate). Phonemes may get 0 frames at a coarser rate.
    """
    d = np.asarray(durations, dtype=np.int64)
    if d.ndim != 1 or (d < 0).any():
        raise DataError("durations must be a 1-D array of non-negative integers")
    ratio = dst_rate / src_rate
    if total is None:
        total = int(round(d.sum() * ratio))
    if d.sum() == 0:
        if total:
            raise DataError("cannot stretch all-zero durations to a positive total")
        return d.copy()
    cum = np.cumsum(d) * ratio
    cum = cum * (total / cum[-1])  # land exactly on `total`
    bounds = np.round(cum).astype(np.int64)
    bounds[-1] = total
    bounds = np.maximum.accumulate(bounds)
    return np.diff(np.concatenate([[0], bounds]))


def merge_sentence_chunks(chunks: list[list[tuple[str, int]]], bos: str = "^", eos: str = "$", sep: str = " "):
    """Join per-sentence teacher alignments [(phoneme, samples)] into one utterance.

    Each chunk is `^ ... $`; inner `$`+`^` pairs become one `sep` so the phoneme sequence matches
    our tokenizer's (sentences joined by a space). Sample counts are kept, so the total is unchanged.
    """
    out: list[list] = []
    for i, chunk in enumerate(chunks):
        if not chunk:
            continue
        if chunk[0][0] != bos or chunk[-1][0] != eos:
            raise DataError(f"teacher chunk {i} is not framed by {bos!r}...{eos!r}")
        if out:
            out[-1] = [sep, out[-1][1] + chunk[0][1]]  # previous '$' + this '^' -> ' '
            out.extend([list(p) for p in chunk[1:]])
        else:
            out.extend([list(p) for p in chunk])
    return [(p, int(n)) for p, n in out]

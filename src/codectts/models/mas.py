"""Monotonic alignment search (Glow-TTS): the best hard alignment of P tokens to T frames.

Each token takes at least one consecutive run of frames, in order, the first token starting at
frame 0 and the last ending at frame T-1. Among all such paths, the one with the largest sum of
`logp[token, frame]` wins. Dynamic programming over frames, vectorised over tokens: O(P * T).
"""
from __future__ import annotations

import numpy as np

from codectts.errors import DataError


def mas_path_score(logp: np.ndarray, durations) -> float:
    """Sum of logp along the path that `durations` (frames per token) describes."""
    idx = np.repeat(np.arange(len(durations)), durations)
    return float(np.asarray(logp)[idx, np.arange(len(idx))].sum())


def monotonic_alignment_search(logp: np.ndarray) -> np.ndarray:
    """logp [P, T] (log-probability of frame t under token p) -> durations [P] (int64, >= 1, summing to T).

    Raises DataError when T < P (every token needs a frame) or the matrix holds NaN.
    """
    logp = np.asarray(logp, dtype=np.float64)
    if logp.ndim != 2:
        raise DataError(f"alignment matrix must be [tokens, frames], got shape {logp.shape}")
    n_tok, n_frames = logp.shape
    if n_tok == 0 or n_frames < n_tok:
        raise DataError(f"cannot align {n_tok} tokens to {n_frames} frames (each token needs at least one)")
    if np.isnan(logp).any():
        raise DataError("alignment matrix holds NaN")
    neg = -np.inf
    # q[p] = best score of a path ending at token p on the current frame; came[t, p] = moved from p-1.
    q = np.full(n_tok, neg)
    q[0] = logp[0, 0]
    came = np.zeros((n_frames, n_tok), dtype=bool)
    for t in range(1, n_frames):
        shifted = np.concatenate(([neg], q[:-1]))
        move = shifted > q
        came[t] = move
        q = np.where(move, shifted, q) + logp[:, t]  # token p stays -inf until frame p
    if not np.isfinite(q[-1]):
        raise DataError("no finite monotonic path through the alignment matrix")
    durations = np.zeros(n_tok, dtype=np.int64)
    p = n_tok - 1
    for t in range(n_frames - 1, -1, -1):
        durations[p] += 1
        if t > 0 and came[t, p]:
            p -= 1
    return durations


def monotonic_alignment_search_batch(logp: np.ndarray, n_tokens, n_frames) -> list[np.ndarray]:
    """The same search for a padded batch logp [B, P, T] at once (one pass over frames for all).

    Utterance b uses logp[b, :n_tokens[b], :n_frames[b]]; whatever is padded never enters its path
    (token p's score depends only on tokens <= p, and the backtrack starts at its own last frame).
    """
    logp = np.asarray(logp, dtype=np.float64)
    n_b, n_tok, n_fr = logp.shape
    for p, t in zip(n_tokens, n_frames, strict=True):
        if p == 0 or t < p or t > n_fr or p > n_tok:
            raise DataError(f"cannot align {p} tokens to {t} frames (each token needs at least one)")
    if np.isnan(logp).any():
        raise DataError("alignment matrix holds NaN")
    q = np.full((n_b, n_tok), -np.inf)
    q[:, 0] = logp[:, 0, 0]
    came = np.zeros((n_fr, n_b, n_tok), dtype=bool)
    for t in range(1, n_fr):
        prev = q.copy()
        move = came[t, :, 1:]
        np.greater(prev[:, :-1], prev[:, 1:], out=move)
        q[:, 1:] = np.where(move, prev[:, :-1], prev[:, 1:])
        q += logp[:, :, t]
    out = []
    for b, (p_n, t_n) in enumerate(zip(n_tokens, n_frames, strict=True)):
        moves = came[1:t_n, b, :p_n]
        durations = np.zeros(p_n, dtype=np.int64)
        p = p_n - 1
        for t in range(t_n - 1, 0, -1):
            durations[p] += 1
            if moves[t - 1, p]:
                p -= 1
        durations[p] += 1
        if p != 0:
            raise DataError("no finite monotonic path through the alignment matrix")
        out.append(durations)
    return out

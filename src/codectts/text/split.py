"""Split long text into sentence-sized pieces a voice can speak one at a time."""
from __future__ import annotations

import re

_SENT_END = re.compile(r"(?:(?<=[.!?;])|(?<=[.!?;][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
_CLAUSE = re.compile(r"(?<=[,:;])\s+")


def split_sentences(text: str, max_chars: int = 300, min_words: int = 1) -> list[str]:
    """Sentences, with any longer than `max_chars` split further at commas, then at spaces.

    Abbreviations are expected to be expanded already (normalize_text), so a full stop ends a sentence.
    A sentence of fewer than `min_words` words is kept with its neighbour (the next one, or the previous
    one at the end) when the two fit in `max_chars`: voices trained on 5-20-word sentences speak a lone
    "Hello!" badly, but "Hello! This is ..." in one piece well.
    """
    text = re.sub(r"\s+", " ", text).strip()
    if not text:
        return []
    out: list[str] = []
    for sent in _SENT_END.split(text):
        sent = sent.strip()
        if not sent:
            continue
        if len(sent) <= max_chars:
            out.append(sent)
            continue
        out.extend(_pack(_CLAUSE.split(sent), max_chars, " "))
    return _join_short(out, max_chars, min_words) if min_words > 1 else out


def _join_short(pieces: list[str], max_chars: int, min_words: int) -> list[str]:
    out: list[str] = []
    for piece in pieces:
        if out and len(out[-1].split()) < min_words and len(out[-1]) + 1 + len(piece) <= max_chars:
            out[-1] = f"{out[-1]} {piece}"
        else:
            out.append(piece)
    if len(out) > 1 and len(out[-1].split()) < min_words and len(out[-2]) + 1 + len(out[-1]) <= max_chars:
        out[-2:] = [f"{out[-2]} {out[-1]}"]
    return out


def _pack(parts: list[str], max_chars: int, sep: str) -> list[str]:
    """Greedily join parts up to max_chars; parts that are too long alone are split at spaces."""
    out, cur = [], ""
    for part in parts:
        if len(part) > max_chars:
            if cur:
                out.append(cur)
                cur = ""
            words = part.split(" ")
            out.extend(_pack(words, max_chars, " ") if len(words) > 1 else
                       [part[i:i + max_chars] for i in range(0, len(part), max_chars)])
            continue
        cand = f"{cur}{sep}{part}" if cur else part
        if len(cand) > max_chars:
            out.append(cur)
            cur = part
        else:
            cur = cand
    if cur:
        out.append(cur)
    return out

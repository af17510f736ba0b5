"""Split long text into sentence-sized pieces a voice can speak one at a time."""
from __future__ import annotations

import re

_SENT_END = re.compile(r"(?:(?<=[.!?;])|(?<=[.!?;][\"')\]]))\s+(?=[\"'(\[]?[A-Z0-9])")
_CLAUSE = re.compile(r"(?<=[,:;])\s+")


def split_sentences(text: str, max_chars: int = 300) -> list[str]:
    """Sentences, with any longer than `max_chars` split further at commas, then at spaces.

    Abbreviations are expected to be expanded already (normalize_text), so a full stop ends a sentence.
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

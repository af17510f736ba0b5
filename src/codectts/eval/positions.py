"""Where in a sentence the word errors fall: WER by thirds of the reference, and its first word alone.

A voice that stumbles at sentence starts (issue 15) and one that mumbles its endings can have the same
WER; this tells them apart. Errors are attributed to reference word positions from jiwer's alignment
of the normalised strings (the same alignment that counts the WER, so the thirds add up to it):

- a substituted or deleted word counts at its own position;
- an inserted word counts at the reference word that follows it (the last word when it trails);
- word i of n is in third min(2, 3i // n): a 2-word sentence has a first and a middle word, no last.

A sentence's first word is wrong when any error lands on position 0 (including words inserted before
it: "oh wow this is" for "hello this is" is wrong at the start). An error *span* is a run of adjacent
edits (one misheard phrase), counted in the third where it starts. Whisper itself errs more at
sentence starts, so read these figures beside the teacher's on the same sentences.
"""
from __future__ import annotations

from codectts.errors import TextError

THIRDS = ("first", "middle", "last")


def third(i: int, n: int) -> int:
    """Third (0, 1, 2) of word i in an n-word sentence."""
    return min(2, 3 * i // n)


def word_errors(ref: str, hyp: str) -> tuple[list[int], list[int]]:
    """Normalised reference and hypothesis -> (edits attributed to each reference word, the reference
    position where each error span starts)."""
    import jiwer

    n = len(ref.split())
    if n == 0:
        raise TextError("a reference with no words has no word positions")
    errors, spans = [0] * n, []
    if not hyp.split():  # silence or a failure: every word deleted, one span
        return [1] * n, [0]
    prev_end = None  # reference index where the last edit chunk ended (adjacent chunks form one span)
    for c in jiwer.process_words(ref, hyp).alignments[0]:
        if c.type == "equal":
            prev_end = None
            continue
        at = min(c.ref_start_idx, n - 1)
        if c.type == "insert":
            errors[at] += c.hyp_end_idx - c.hyp_start_idx
        else:
            for i in range(c.ref_start_idx, c.ref_end_idx):
                errors[i] += 1
        if prev_end is None:
            spans.append(at)
        prev_end = c.ref_end_idx
    return errors, spans


def position_scores(refs: list[str], hyps: list[str]) -> dict:
    """Corpus-level breakdown over normalised (reference, hypothesis) pairs: per third the reference
    words, attributed edits, WER and error spans; the first word's error count and rate."""
    if len(refs) != len(hyps):
        raise TextError(f"{len(refs)} reference(s) but {len(hyps)} hypothesis(es)")
    words, edits, spans = [0, 0, 0], [0, 0, 0], [0, 0, 0]
    first = 0
    for ref, hyp in zip(refs, hyps, strict=True):
        errs, starts = word_errors(ref, hyp)
        n = len(errs)
        for i, e in enumerate(errs):
            words[third(i, n)] += 1
            edits[third(i, n)] += e
        for s in starts:
            spans[third(s, n)] += 1
        first += errs[0] > 0
    out: dict = {
        name: {"ref_words": words[j], "errors": edits[j], "wer": edits[j] / words[j] if words[j] else None,
               "spans": spans[j]}
        for j, name in enumerate(THIRDS)
    }
    out["first_word"] = {"n": len(refs), "errors": first, "rate": first / len(refs) if refs else None}
    return out


def format_positions(columns: dict[str, dict]) -> list[str]:
    """Text table of position breakdowns side by side: {column name: position_scores(...)}."""
    names = list(columns)
    lines = ["position     " + "".join(f"{n[:24]:>26}" for n in names)]
    for t in THIRDS:
        cells = []
        for n in names:
            p = columns[n][t]
            wer = "-" if p["wer"] is None else f"{100 * p['wer']:.1f}%"
            cells.append(f"{wer} ({p['errors']}/{p['ref_words']}, {p['spans']} spans)")
        lines.append(f"{t + ' third':<13}" + "".join(f"{c:>26}" for c in cells))
    cells = [f"{100 * columns[n]['first_word']['rate']:.1f}% ({columns[n]['first_word']['errors']}/"
             f"{columns[n]['first_word']['n']})" for n in names]
    lines.append(f"{'first word':<13}" + "".join(f"{c:>26}" for c in cells))
    return lines

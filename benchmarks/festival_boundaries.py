"""Word boundaries of `codectts align` against Festival's own segment timings (a second ground truth).

A corpus made by `codectts corpus festival` carries, per utterance, the times Festival gave each word
in the wave it wrote (festival_timings.jsonl). After `corpus import --ljspeech` (which resamples and
trims) and `align`, this compares every word's start and end: the aligner's are the first and last
frame of the word's phonemes (a word is a run of phonemes between spaces, punctuation and ^ $),
Festival's are shifted by the samples the import trimmed off the start (data/ljspeech.trim_span,
recomputed from the source wave). Festival's "'s" pieces join the word before them; utterances whose
word counts still differ (espeak joins "on the", "out of", ...; Festival spells out "RBL") are counted,
not compared.

    python benchmarks/festival_boundaries.py --lj /work/corpora/slt-lj --data /work/corpora/slt --out fb.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from codectts.audio.io import resample
from codectts.data.ljspeech import ImportConfig, trim_span
from codectts.data.manifest import read_jsonl

SEPARATORS = set(" ^$_#↓.,;:!?\"'()-\u2014\u2026")


def word_spans(phonemes: list[str], durations: list[int], frame_s: float) -> list[tuple[float, float]]:
    """(start, end) seconds of each run of phonemes between separators."""
    ends = np.cumsum(durations) * frame_s
    spans, start = [], None
    for i, p in enumerate(phonemes):
        if p in SEPARATORS:
            if start is not None:
                spans.append((start, ends[i - 1]))
                start = None
        elif start is None:
            start = ends[i - 1] if i else 0.0
    if start is not None:
        spans.append((start, ends[-1]))
    return spans


def trim_offset(wav_path: Path, cfg: ImportConfig) -> float:
    wav, sr = sf.read(str(wav_path), dtype="float32", always_2d=True)
    wav = wav.mean(axis=1)
    if sr != cfg.sample_rate:
        wav = resample(wav, sr, cfg.sample_rate)
    return trim_span(wav, cfg)[0] / cfg.sample_rate


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lj", type=Path, required=True, help="folder written by `codectts corpus festival`")
    ap.add_argument("--data", type=Path, required=True, help="the same, imported and aligned")
    ap.add_argument("--out", type=Path, help="write the JSON result here too")
    args = ap.parse_args()

    festival = {}
    for line in (args.lj / "festival_timings.jsonl").read_text(encoding="utf-8").splitlines():
        rec = json.loads(line)
        words: list[list] = []
        for w in rec["words"]:  # Festival splits "year's" into "year" + "'s" (no segments of its own: 0, 0)
            if words and w[0].startswith("'"):
                words[-1] = [words[-1][0] + w[0], words[-1][1], max(words[-1][2], w[2])]
            else:
                words.append(w)
        festival[rec["id"]] = words
    cfg = ImportConfig()
    starts, ends, skipped, n = [], [], 0, 0
    for name in ("manifest.jsonl", "dev.jsonl"):
        for u in read_jsonl(args.data / name):
            if u.id not in festival or not u.durations:
                continue
            n += 1
            learned = word_spans(list(u.phonemes), list(u.durations), u.hop / u.sample_rate)
            truth = festival[u.id]
            if len(learned) != len(truth):
                skipped += 1
                continue
            off = trim_offset(args.lj / "wavs" / f"{u.id}.wav", cfg)
            for (ls, le), (_, fs, fe) in zip(learned, truth, strict=True):
                starts.append((ls - (fs - off)) * 1000)
                ends.append((le - (fe - off)) * 1000)
    s, e = np.array(starts), np.array(ends)
    both = np.concatenate([s, e])

    def stats(signed: np.ndarray) -> dict:
        x = np.abs(signed)
        return {"mae_ms": round(float(x.mean()), 2), "median_ms": round(float(np.median(x)), 2),
                "within_20ms": round(float((x <= 20).mean()), 4), "within_50ms": round(float((x <= 50).mean()), 4),
                "mean_signed_ms": round(float(signed.mean()), 2)}  # > 0: the aligner's boundary is later

    result = {"data": str(args.data), "utterances": n, "not_comparable": skipped, "words": int(s.size),
              "boundaries": stats(both), "word_starts": stats(s), "word_ends": stats(e)}
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()

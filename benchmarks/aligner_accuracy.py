"""Learned durations against the teacher's: how well `codectts align` recovers Piper's phoneme timing.

Copies a teacher corpus's manifests without durations into a scratch folder (audio stays where it
is), optionally swaps the transcripts of a few utterances (they should be flagged), runs the aligner
on it and compares with the teacher: mean absolute boundary error (ms), share of boundaries within
20 and 50 ms, per-phoneme duration MAE (at the mel rate and at the codec's 21.5 Hz), and which
planted mismatches were excluded.

    python benchmarks/aligner_accuracy.py --data data/joe --work /tmp/align-bench --plant 10
"""
from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path

import numpy as np

from codectts.data.alignment import convert_durations
from codectts.data.manifest import Utterance, read_jsonl, write_jsonl
from codectts.train.aligner import EXCLUDED, SPLITS, align_corpus

MODIFIERS = {"ˈ", "ˌ", "ː"}  # stress and length marks: the teacher gives them frames, but no sound of their own
CODEC_RATE = 22050 / 1024


def teacher_records(data: Path) -> dict[str, list[Utterance]]:
    return {s: read_jsonl(data / n) for s, n in SPLITS.items() if (data / n).exists()}


def compare(teacher: dict[str, Utterance], learned: list[Utterance]) -> dict:
    ms = 1000 * 256 / 22050
    errs, errs_phones, dur_err, codec_err, skipped = [], [], [], [], 0
    for u in learned:
        t = teacher[u.id]
        if t.phonemes != u.phonemes or sum(t.durations) != sum(u.durations):
            skipped += 1
            continue
        bt, bl = np.cumsum(t.durations)[:-1], np.cumsum(u.durations)[:-1]
        e = np.abs(bt - bl) * ms
        errs.append(e)
        keep = [i for i in range(len(bt)) if t.phonemes[i] not in MODIFIERS and t.phonemes[i + 1] not in MODIFIERS]
        errs_phones.append(e[keep])
        dur_err.append(np.abs(np.array(t.durations) - np.array(u.durations)) * ms)
        n = round(sum(t.durations) * CODEC_RATE / (22050 / 256))
        ct = convert_durations(t.durations, 22050 / 256, CODEC_RATE, total=n)
        cl = convert_durations(u.durations, 22050 / 256, CODEC_RATE, total=n)
        codec_err.append(np.abs(ct - cl))
    e, ep, d, c = (np.concatenate(x) for x in (errs, errs_phones, dur_err, codec_err))
    return {"utterances": len(errs), "not_comparable": skipped, "boundaries": int(e.size),
            "boundary_mae_ms": round(float(e.mean()), 2), "boundary_median_ms": round(float(np.median(e)), 2),
            "within_20ms": round(float((e <= 20).mean()), 4), "within_50ms": round(float((e <= 50).mean()), 4),
            "phone_boundaries": int(ep.size), "phone_boundary_mae_ms": round(float(ep.mean()), 2),
            "phone_within_20ms": round(float((ep <= 20).mean()), 4),
            "phone_within_50ms": round(float((ep <= 50).mean()), 4),
            "duration_mae_ms": round(float(d.mean()), 2), "duration_mae_codec_frames": round(float(c.mean()), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="corpus with teacher durations (read only)")
    ap.add_argument("--work", type=Path, required=True, help="scratch folder for the copy without durations")
    ap.add_argument("--plant", type=int, default=10, help="utterances whose transcripts are swapped")
    ap.add_argument("--max-minutes", type=float, default=20.0)
    ap.add_argument("--max-steps", type=int, default=4000)
    ap.add_argument("--out", type=Path, help="write the JSON result here too")
    args = ap.parse_args()

    splits = teacher_records(args.data)
    teacher = {u.id: u for us in splits.values() for u in us}
    args.work.mkdir(parents=True, exist_ok=True)
    for stale in [args.work / EXCLUDED, *(args.work / n for n in SPLITS.values())]:
        stale.unlink(missing_ok=True)
    rng = random.Random(0)
    train_ids = [u.id for u in splits["train"]]
    planted = set(rng.sample(train_ids, min(args.plant, len(train_ids) // 2)))
    donors = dict(zip(sorted(planted), rng.sample(sorted(set(train_ids) - planted), len(planted)), strict=True))
    for split, utts in splits.items():
        copies = []
        for u in utts:
            src = teacher[donors[u.id]] if u.id in planted else u
            copies.append(Utterance(id=u.id, audio=str(u.audio_path(args.data).resolve()), text=src.text,
                                    normalized=src.normalized, speaker=u.speaker, duration=u.duration,
                                    phonemes=list(src.phonemes)))
        write_jsonl(args.work / SPLITS[split], copies)
    t0 = time.time()
    report = align_corpus(args.work, max_minutes=args.max_minutes, max_steps=args.max_steps)
    wall = time.time() - t0
    learned = [u for n in SPLITS.values() if (args.work / n).exists() for u in read_jsonl(args.work / n)]
    excluded = {e["id"] for e in report["excluded_list"]}
    result = {"data": str(args.data), "align_wall_s": round(wall, 1),
              "audio_hours": round(sum(teacher[u].duration for u in teacher) / 3600, 3),
              **compare(teacher, [u for u in learned if u.id not in planted]),
              "planted_mismatches": len(planted), "planted_excluded": len(planted & excluded),
              "clean_excluded": len(excluded - planted), "score_threshold": report["score_threshold"],
              "score_percentiles": report["score_percentiles"], "mel_s": report["mel_s"], "train_s": report["train_s"]}
    scores = {}
    for line in (args.work / "align_scores.tsv").read_text().splitlines()[1:]:
        uid, _, sc = line.split("\t")
        scores[uid] = float(sc)
    result["planted_scores"] = sorted(scores[u] for u in planted if u in scores)
    result["clean_lowest_scores"] = sorted(v for u, v in scores.items() if u not in planted)[:10]
    print(json.dumps(result, indent=1))
    if args.out:
        args.out.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()

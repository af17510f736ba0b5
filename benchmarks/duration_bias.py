"""How far a duration model's utterance lengths are from the truth, and its length scale refitted.

A duration model regressed in the log domain predicts short utterances (models/duration.py). This
prints, for the train and dev splits of a code cache, predicted / true frames summed over the split and
the mean per-utterance ratio, with the model as it is and with `length_scale` refitted on the training
split. `--out DIR` writes the part with the refitted scale (weights unchanged): how a duration model
trained before `train duration` fitted the scale itself is brought up to date. Prints and writes JSON.

    python benchmarks/duration_bias.py --duration src/codectts/voices/joe/duration --codes data/joe-codes \
        [--out runs/joe-duration-cal] [--json bias.json]
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from codectts.data.codecache import CodeCache
from codectts.models.duration import DurationModel
from codectts.text.tokenizers import PhonemeTokenizer
from codectts.train.duration import batches, duration_items, fit_length_scale


@torch.no_grad()
def length_ratios(model: DurationModel, items) -> dict[str, float]:
    pred = true = 0.0
    ratios = []
    for text, lengths, dur in batches(items, 64):
        p = model.predict(text, lengths)
        for i in range(text.shape[0]):
            n = int(lengths[i])
            pred, true = pred + float(p[i, :n].sum()), true + float(dur[i, :n].sum())
            ratios.append(float(p[i, :n].sum()) / max(1.0, float(dur[i, :n].sum())))
    return {"utterances": len(items), "pred_over_true": round(pred / true, 4),
            "mean_ratio": round(sum(ratios) / len(ratios), 4)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--duration", required=True, help="duration part folder")
    ap.add_argument("--codes", required=True, help="code cache with train and dev splits")
    ap.add_argument("--out", help="write the part with the refitted length scale here")
    ap.add_argument("--json", help="write the figures here")
    args = ap.parse_args()
    torch.set_num_threads(1)
    tok = PhonemeTokenizer()
    model = DurationModel.load(args.duration).eval()
    splits = {s: duration_items(CodeCache(args.codes, s), tok) for s in ("train", "dev")}
    report = {"duration": args.duration, "codes": args.codes, "length_scale_before": model.cfg.length_scale,
              "before": {s: length_ratios(model, items) for s, items in splits.items()}}
    report["length_scale_after"] = round(fit_length_scale(model, splits["train"]), 5)
    report["after"] = {s: length_ratios(model, items) for s, items in splits.items()}
    print(json.dumps(report, indent=1))
    if args.out:
        model.save(Path(args.out))
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()

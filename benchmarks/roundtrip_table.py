"""Markdown table of `codectts eval roundtrip` results (issue 14): one row per sound chain, plus the
ground-truth row (the inputs' own WER and DNSMOS, from a run made with --reference).

The runs behind docs/codecs.md and docs/vocoders.md (dev utterances of the corpus, one thread):

    R="codectts eval roundtrip --manifest CORPUS --split dev --quiet"
    $R --vocoder griffinlim --out rt/gl                        # teacher mel -> Griffin-Lim, + ground truth
    $R --codec runs/codec-k8x1024-spec/best --vocoder griffinlim --out rt/k8x1024-spec-30 --no-reference --limit 30
    $R --vocoder runs/vocos-small/best --out rt/vocos-small-10 --no-reference --no-asr --limit 10
    python benchmarks/roundtrip_table.py rt/gl rt/k8x1024-spec-30 --n 30
    python benchmarks/roundtrip_table.py rt/gl rt/vocos --against rt/gl   # + paired bootstrap WER intervals
    python benchmarks/roundtrip_table.py rt/gl,rt/ho-gl rt/vocos,rt/ho-vocos --against rt/gl,rt/ho-gl  # two sets pooled

Every figure is recomputed from the per-utterance records, so `--n` compares runs on one subset.
A run given as `rt/gl,rt/ho-gl` pools two sets (each run's folders in the same order).
`--against RUN` adds each run's WER minus RUN's on the same sentences, its 95 % interval from a paired
bootstrap over sentences, and how often the run is worse in the resamples: one word is about 0.1
point on 100 dev sentences, so a gap of a few words is read against that interval.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

KEYS = ("ovrl", "sig", "bak", "p808")


def fmt(v, spec: str) -> str:
    return "-" if v is None else format(v, spec)


def mean(vals: list) -> float | None:
    vals = [v for v in vals if v is not None]
    return sum(vals) / len(vals) if vals else None


def scores(utts: list[dict], hyp_key: str, mos_key: str) -> dict:
    """WER/CER (corpus level) and DNSMOS means over these utterance records."""
    from codectts.eval.asr import wer_cer

    out: dict = {}
    with_text = [u for u in utts if hyp_key in u]
    if with_text:
        out.update(wer_cer([u["text"] for u in with_text], [u[hyp_key] for u in with_text]))
    for k in KEYS:
        out[k] = mean([u[mos_key][k] for u in utts if u.get(mos_key)])
    return out


def row(name: str, sc: dict, utts: list[dict], summary: dict | None) -> str:
    s = summary or {}
    cells = [name, fmt(sc.get("wer"), ".1%"), fmt(sc.get("cer"), ".1%"), *(fmt(sc.get(k), ".2f") for k in KEYS)]
    if summary is None:
        cells += ["-"] * 7
    else:
        cells += [fmt(mean([u.get("pesq_wb") for u in utts]), ".2f"), fmt(mean([u.get("stoi") for u in utts]), ".3f"),
                  fmt(mean([u.get("mel_l1") for u in utts]), ".3f"), fmt(s.get("bits_per_second"), ".0f"),
                  fmt(s.get("frame_rate"), ".1f"), fmt(s.get("n_codebooks"), "d"), fmt(s.get("rtf"), ".3f")]
    return "| " + " | ".join(c.replace("%", " %") for c in cells) + " |"


def against_cell(utts: list[dict], base: dict[str, dict]) -> str:
    """WER(run) - WER(base) over the sentences both transcribed, with the paired bootstrap interval."""
    from codectts.eval.asr import paired_wer_bootstrap

    both = [u for u in utts if "hypothesis" in u and "hypothesis" in base.get(u["id"], {})]
    if not both:
        return "-"
    b = paired_wer_bootstrap([u["text"] for u in both], [base[u["id"]]["hypothesis"] for u in both],
                             [u["hypothesis"] for u in both])
    lo, hi = b["ci95"]
    return f"{b['diff']:+.1%} [{lo:+.1%}, {hi:+.1%}] p={b['p_b_worse']:.2f}".replace("%", " %")


def load_utts(path: Path, n: int | None) -> tuple[list[dict], dict]:
    """A run's utterance records and summary; "A,B" pools the runs A and B of one chain on two sets (ids
    are prefixed with the set's position, so pooled runs pair set by set; the summary is A's)."""
    utts, summary = [], None
    for i, part in enumerate(str(path).split(",")):
        f = Path(part) / "roundtrip.json" if Path(part).is_dir() else Path(part)
        data = json.loads(f.read_text())
        utts += [{**u, "id": f"{i}:{u['id']}"} for u in data["utterances"][:n] if "output" in u]
        summary = summary or data["summary"]
    return utts, summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", nargs="+", type=Path, help="roundtrip --out folders (or their roundtrip.json)")
    ap.add_argument("--n", type=int, default=None, help="only the first N utterances of every run (common subset)")
    ap.add_argument("--against", type=Path, default=None,
                    help="a run to compare each row's WER with (paired bootstrap over the same sentences)")
    args = ap.parse_args()
    base = {u["id"]: u for u in load_utts(args.against, args.n)[0]} if args.against else None
    print("| audio | WER | CER | OVRL | SIG | BAK | P808 | PESQ-wb | STOI | mel L1 | bits/s | frames/s | "
          "codebooks | RTF |" + (f" WER - {'+'.join(Path(p).name for p in str(args.against).split(','))} [95 %] |"
                                 if base else ""))
    print("|---|" + "---:|" * (13 + bool(base)))
    gt_done = False
    for path in args.runs:
        utts, s = load_utts(path, args.n)
        if "dnsmos_input" in s and not gt_done:
            print(row("ground truth (teacher audio)", scores(utts, "hypothesis_input", "dnsmos_input"), utts, None)
                  + (" - |" if base else ""))
            gt_done = True
        print(row(s["name"], scores(utts, "hypothesis", "dnsmos"), utts, s) + (f" {against_cell(utts, base)} |"
                                                                             if base else ""))


if __name__ == "__main__":
    main()

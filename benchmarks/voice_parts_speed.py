#!/usr/bin/env python
"""Model-part RTF and whole-voice RTF of several voices on the same sentences, measured in turn.

Model part = `Synthesizer.sentence_codes` (the acoustic model alone: text -> codes, or a soft TRM voice's
distributions); decoder = `Synthesizer.decode_codes` of those (codec decoder + vocoder); whole voice =
both. RTF = wall time / duration of the audio (below 1 = faster than real time). Each dev sentence is one
piece of text. Voices are measured in turn on each sentence (voice A, voice B, voice A, ...), so a change
of machine load hits all of them alike; the ratios between voices are the headline on a shared machine.
Run by hand, e.g.:
    nice -n 10 python benchmarks/voice_parts_speed.py --voice joe --voice src/codectts/voices/joe-trm \
        --sentences 20 --threads 1 --out parts_speed.json
"""
from __future__ import annotations

import argparse
import sys
import time

from machine import machine_info, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--voice", action="append", required=True, help="voice name or folder (repeat)")
    ap.add_argument("--sentences", type=int, default=20, help="first N texts of the shipped dev sentences")
    ap.add_argument("--warmup", type=int, default=1, help="untimed texts per voice first")
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()

    import torch

    from codectts.eval.devset import dev_texts
    from codectts.infer import Synthesizer

    if args.threads:
        torch.set_num_threads(args.threads)
    machine = machine_info()
    texts = dev_texts("sentences")[: args.sentences]
    voices = [Synthesizer.load(v) for v in args.voice]
    def measure(s, text: str, seed: int) -> tuple[float, float, float]:
        t0 = time.perf_counter()
        codes = s.sentence_codes(text, seed=seed)
        t1 = time.perf_counter()
        wav = s.decode_codes(codes)
        return t1 - t0, time.perf_counter() - t1, len(wav) / s.sample_rate

    for s in voices:
        for text in texts[: args.warmup]:
            measure(s, text, args.seed)
    times = {s.name: {"model_s": 0.0, "decode_s": 0.0, "audio_s": 0.0} for s in voices}
    for i, text in enumerate(texts):
        for s in voices:
            for key, value in zip(("model_s", "decode_s", "audio_s"), measure(s, text, args.seed + i), strict=True):
                times[s.name][key] += value
        print(f"[{i + 1}/{len(texts)}]", file=sys.stderr)
    rows = [{"voice": name, **t, "model_rtf": t["model_s"] / t["audio_s"],
             "voice_rtf": (t["model_s"] + t["decode_s"]) / t["audio_s"]} for name, t in times.items()]
    report({"benchmark": "voice parts speed", "texts": "codectts dev sentences", "n_texts": len(texts),
            "threads": torch.get_num_threads(), "rows": rows}, args.out, machine)


if __name__ == "__main__":
    main()

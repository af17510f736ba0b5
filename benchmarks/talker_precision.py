#!/usr/bin/env python
"""The Talker's generation at several weight precisions: CPU time per frame, variants alternating.

float32, bfloat16 and float16 (`model.to(dtype)`) and int8 dynamic quantisation of every nn.Linear of
the decoder stack (torch.ao.quantization.quantize_dynamic, deprecated in torch), each generating the same dev sentences
with the same seeds, round after round (A, B, C, D, A, ...). Thread CPU time, not wall time: on a
shared machine it is less hit by other processes (caches and memory bandwidth are still shared).

Run by hand, e.g.:
    nice -n 10 python benchmarks/talker_precision.py --voice joe --sentences 4 --rounds 5
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
import warnings

import torch
from machine import machine_info, report


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--voice", default=None)
    p.add_argument("--sentences", type=int, default=4)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", help="Write the JSON here too.")
    args = p.parse_args(argv)
    from codectts.eval.devset import dev_texts
    from codectts.infer import Synthesizer

    torch.set_num_threads(1)
    info = machine_info()
    synth = Synthesizer.load(args.voice)
    engine, model = synth.engine, synth.engine.model.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao deprecation
        variants = {"float32": model, "bfloat16": copy.deepcopy(model).to(torch.bfloat16),
                    "float16": copy.deepcopy(model).to(torch.float16),
                    "int8_dynamic": copy.deepcopy(model)}
        q = variants["int8_dynamic"]  # the decoder stack (85 % of the weights); the heads stay float32
        q.transformer = torch.ao.quantization.quantize_dynamic(q.transformer, {torch.nn.Linear}, torch.qint8)
    plans = [engine.plan(t, 1.0) for t in dev_texts("sentences")[: args.sentences]]
    ms: dict[str, list[float]] = {k: [] for k in variants}
    with torch.inference_mode():
        for r in range(args.rounds):
            for name, m in variants.items():
                engine.model = engine.generator.model = m
                t0, frames = time.thread_time(), 0
                for i, plan in enumerate(plans):
                    gen = torch.Generator().manual_seed(i)
                    frames += sum(c.shape[-1] for c in engine.code_chunks(plan, synth.default_sampling, gen, 0))
                ms[name].append(1000 * (time.thread_time() - t0) / frames)
            print(f"round {r + 1}: " + "  ".join(f"{k} {v[-1]:.2f}" for k, v in ms.items()), file=sys.stderr)
    result = {"benchmark": "talker_precision", "voice": synth.name, "sentences": args.sentences,
              "rounds": args.rounds, "cpu_ms_per_frame_median": {k: statistics.median(v) for k, v in ms.items()},
              "cpu_ms_per_frame": ms}
    report(result, args.out, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())

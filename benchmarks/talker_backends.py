#!/usr/bin/env python
"""The Talker's backends side by side: torch (eager), onnx, onnx-int8 (infer/onnx_talker.py).

Three measurements, one torch thread:
  profile   torch.profiler over the eager Talker's frame loop: op calls per frame, the share of aten::mm
  same      do the torch and onnx backends give identical codes? `Synthesizer.sentence_codes` on the
            first --check dev sentences for each of --seeds (text i of seed s gets seed s + i, as
            `eval tts` does), and once greedy (temperature 0)
  speed     thread CPU time per generated frame of the Talker alone (conditioning, steps, heads,
            sampling), the backends alternating round by round (A, B, C, A, ...)

Run by hand, e.g.:
    nice -n 10 python benchmarks/talker_backends.py --voice joe --check 30 --seeds 0,1 --rounds 5
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch
from machine import machine_info, report

BACKENDS = ("torch", "onnx", "onnx-int8")


def frames_of(synth, plans, seed0: int = 0) -> int:
    engine, n = synth.engine, 0
    for i, plan in enumerate(plans):
        gen = torch.Generator().manual_seed(seed0 + i)
        n += sum(c.shape[-1] for c in engine.code_chunks(plan, synth.default_sampling, gen, 0))
    return n


def profile(synth, plans) -> dict:
    from torch.profiler import ProfilerActivity
    from torch.profiler import profile as torch_profile

    with torch_profile(activities=[ProfilerActivity.CPU]) as prof:
        n = frames_of(synth, plans)
    ops = [e for e in prof.key_averages() if e.key.startswith("aten::")]
    total = sum(e.self_cpu_time_total for e in ops)
    mm = sum(e.self_cpu_time_total for e in ops if e.key == "aten::mm")
    return {"frames": n, "aten_calls_per_frame": sum(e.count for e in ops) / n,
            "mm_calls_per_frame": sum(e.count for e in ops if e.key == "aten::mm") / n,
            "mm_share_of_op_time": mm / total}


def same_codes(a, b, texts: list[str], seeds: list[int]) -> dict:
    runs = [(s, None) for s in seeds] + [(0, 0.0)]
    same, total, frames = 0, 0, 0
    for seed, temperature in runs:
        for i, text in enumerate(texts):
            ca = a.sentence_codes(text, seed=seed + i, temperature=temperature)
            cb = b.sentence_codes(text, seed=seed + i, temperature=temperature)
            same += int(torch.equal(ca, cb))
            total += 1
            frames += ca.shape[-1]
    return {"identical": same, "utterances": total, "frames": frames}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--voice", default=None)
    p.add_argument("--check", type=int, default=10, help="Dev sentences for the torch/onnx code comparison.")
    p.add_argument("--seeds", default="0,1")
    p.add_argument("--sentences", type=int, default=4, help="Dev sentences for the profile and the timing.")
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--out", help="Write the JSON here too.")
    args = p.parse_args(argv)
    from codectts.eval.devset import dev_texts
    from codectts.infer import Synthesizer

    torch.set_num_threads(1)
    info = machine_info()
    synths = {b: Synthesizer.load(args.voice, backend=b) for b in BACKENDS}
    texts = dev_texts("sentences")
    plans = [synths["torch"].engine.plan(t, 1.0) for t in texts[: args.sentences]]
    result = {"benchmark": "talker_backends", "voice": synths["torch"].name}
    with torch.inference_mode():
        result["profile_torch"] = profile(synths["torch"], plans)
        print(f"profile: {result['profile_torch']}", file=sys.stderr)
        seeds = [int(s) for s in args.seeds.split(",")]
        result["same_codes_torch_onnx"] = same_codes(synths["torch"], synths["onnx"], texts[: args.check], seeds)
        print(f"same codes: {result['same_codes_torch_onnx']}", file=sys.stderr)
        ms: dict[str, list[float]] = {b: [] for b in BACKENDS}
        for s in synths.values():
            frames_of(s, plans[:1])  # warm-up
        for r in range(args.rounds):
            for b, s in synths.items():
                t0 = time.thread_time()
                n = frames_of(s, plans)
                ms[b].append(1000 * (time.thread_time() - t0) / n)
            print(f"round {r + 1}: " + "  ".join(f"{k} {v[-1]:.2f}" for k, v in ms.items()), file=sys.stderr)
    result["cpu_ms_per_frame_median"] = {k: statistics.median(v) for k, v in ms.items()}
    result["cpu_ms_per_frame"] = ms
    report(result, args.out, info)
    return 0


if __name__ == "__main__":
    sys.exit(main())

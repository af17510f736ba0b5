#!/usr/bin/env python
"""Where a Talker voice spends its time: seconds of compute per second of audio, stage by stage.

Stages of `Synthesizer.synthesize` for each dev sentence (whole-sentence decode, as `synthesize` does):
  text      normalise + split + phonemise (tokenizer.encode)
  duration  duration model
  talker    the Talker's frame loop, split into
              conditioning  phoneme encoder + length regulation (once per sentence)
              backbone      the causal transformer steps (timed around `model.transformer`; with
                            --backend onnx the ONNX frame graph, which includes the frame embedding,
                            the depth heads and the sampling)
              heads         the rest of each step: frame embedding, depth heads, top-k sampling (with
                            --backend onnx: the noise draws and the Python loop)
  codec     codes -> log-mel (codec decoder)
  vocoder   log-mel -> waveform
The split of the Talker wraps its modules' `forward`, so it measures the same generation code the
voice runs, whichever loop drives it. Each figure is the median over `--repeats` passes of the sentence
set; with several `--weights` / `--backend` the passes alternate between them (A, B, A, B, ...), so a change of machine
load hits every variant alike. Wall-clock time: on a shared machine, read it beside the load average.

Run by hand, e.g.:
    nice -n 10 python benchmarks/profile_stages.py --voice joe --sentences 20 --out profile.json
    python benchmarks/profile_stages.py --voice joe --weights float32 --weights bfloat16 --repeats 5
    python benchmarks/profile_stages.py --voice joe --backend torch --backend onnx --backend onnx-int8
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
from machine import machine_info, report

STAGES = ("text", "duration", "conditioning", "backbone", "heads", "codec", "vocoder")


class Clock:
    """Accumulates wall time per stage name."""

    def __init__(self):
        self.s: dict[str, float] = defaultdict(float)

    def wrap(self, obj, name: str, method: str = "forward") -> None:
        """Time every call of `obj.method` under `name` (instance attribute: the class is untouched)."""
        inner = getattr(obj, method)

        def timed(*a, **k):
            t0 = time.perf_counter()
            out = inner(*a, **k)
            self.s[name] += time.perf_counter() - t0
            return out

        setattr(obj, method, timed)


def profile_pass(synth, texts: list[str], clock: Clock, seed: int) -> float:
    """One pass over the texts; returns seconds of audio produced. Stage times accumulate in `clock`."""
    from codectts.infer.engines import SentencePlan

    engine = synth.engine
    audio = 0.0
    for i, text in enumerate(texts):
        t0 = time.perf_counter()
        sents = synth.sentences(text)
        ids = [torch.tensor([engine.tokenizer.encode(s)]) for s in sents]
        clock.s["text"] += time.perf_counter() - t0
        for j, t in enumerate(ids):
            t0 = time.perf_counter()
            dur = engine.duration.predict(t)
            clock.s["duration"] += time.perf_counter() - t0
            gen = torch.Generator().manual_seed(seed + i)
            before = sum(clock.s[k] for k in ("conditioning", "backbone"))
            t0 = time.perf_counter()
            codes = torch.cat(list(engine.code_chunks(SentencePlan(sents[j], t, dur, 1.0),
                                                      synth.default_sampling, gen, 0)), dim=-1)
            talker = time.perf_counter() - t0
            clock.s["heads"] += talker - (sum(clock.s[k] for k in ("conditioning", "backbone")) - before)
            t0 = time.perf_counter()
            mel = synth.codec.decode_mel(codes)
            clock.s["codec"] += time.perf_counter() - t0
            t0 = time.perf_counter()
            wav = synth.vocoder(mel)
            clock.s["vocoder"] += time.perf_counter() - t0
            audio += wav.shape[-1] / synth.sample_rate
    return audio


def load(voice: str | None, weights: str | None, backend: str):
    from codectts.infer import Synthesizer

    synth = Synthesizer.load(voice, weights=weights, backend=backend)
    if synth.engine.kind != "talker" or synth.engine.duration is None or synth.vocoder is None:
        raise SystemExit("profile_stages measures aligned Talker voices with a mel codec and a vocoder")
    clock, model = Clock(), synth.engine.model
    if synth.backend == "torch":
        clock.wrap(model.text_encoder, "conditioning")
        clock.wrap(model.transformer, "backbone")
    else:  # infer.onnx_talker.OnnxTalker: the eager text encoder, the frame graph
        clock.wrap(model.talker.text_encoder, "conditioning")
        clock.wrap(model.session, "backbone", "run")
    return synth, clock


def table(per_s: dict[str, float]) -> str:
    total = sum(per_s[k] for k in STAGES)
    lines = [f"{'stage':<14}{'s per s audio':>14}{'share':>8}"]
    for k in ("text", "duration", "talker", "conditioning", "backbone", "heads", "codec", "vocoder"):
        indent = "  " if k in ("conditioning", "backbone", "heads") else ""
        lines.append(f"{indent + k:<14}{per_s[k]:>14.4f}{per_s[k] / total:>8.1%}")
    return "\n".join([*lines, f"{'total (RTF)':<14}{total:>14.4f}"])


def run(args) -> dict:
    from codectts.eval.devset import dev_texts

    torch.set_num_threads(args.threads)
    info = machine_info()
    systems = {":".join(x for x in (w, b) if x) or "voice's": load(args.voice, w, b or "auto")
               for w in args.weights or [None] for b in args.backend or [None]}
    texts = dev_texts("sentences")[: args.sentences]
    passes: dict[str, list[dict]] = {k: [] for k in systems}
    with torch.inference_mode():
        for synth, _ in systems.values():
            profile_pass(synth, texts[:1], Clock(), args.seed)  # warm-up (allocation, first-call costs)
        for r in range(args.repeats):
            for name, (synth, clock) in systems.items():  # variants alternate pass by pass
                clock.s.clear()
                audio = profile_pass(synth, texts, clock, args.seed)
                passes[name].append({k: clock.s[k] / audio for k in STAGES})
                print(f"pass {r + 1}/{args.repeats} {name}: RTF {sum(passes[name][-1].values()):.3f}", file=sys.stderr)
    results = {}
    for name, ps in passes.items():
        per_s = {k: statistics.median(p[k] for p in ps) for k in STAGES}
        per_s["talker"] = per_s["conditioning"] + per_s["backbone"] + per_s["heads"]
        print(f"== {name}\n{table(per_s)}", file=sys.stderr)
        results[name] = {"seconds_per_audio_second": per_s, "rtf": sum(per_s[k] for k in STAGES), "passes": ps}
    return {"benchmark": "profile_stages", "voice": next(iter(systems.values()))[0].name,
            "texts": "codectts dev sentences", "n_texts": len(texts), "audio_s": audio, "repeats": args.repeats,
            "threads": args.threads, "variants": results, "_machine": info}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--voice", default=None, help="Voice name or folder (default: the shipped voice).")
    p.add_argument("--sentences", type=int, default=20, help="How many dev sentences (from the start).")
    p.add_argument("--repeats", type=int, default=3, help="Passes over the sentences; figures are medians.")
    p.add_argument("--threads", type=int, default=1, help="torch threads (the CLI's default is 1).")
    p.add_argument("--weights", action="append", help="Talker weight precision (float32, bfloat16; default: the "
                   "voice's); repeat it to compare, passes alternating between the variants.")
    p.add_argument("--backend", action="append", help="Talker backend (auto, torch, onnx, onnx-int8; default "
                   "auto: the voice's own); repeatable like --weights.")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="Write the JSON here too.")
    args = p.parse_args(argv)
    result = run(args)
    machine = result.pop("_machine")
    report(result, args.out, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())

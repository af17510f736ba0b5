#!/usr/bin/env python
"""Speed of a voice against the Piper teacher, measured on the same sentences in the same run.

Real-time factor (RTF) = synthesis wall time / audio duration (below 1 = faster than real time).
Time to first chunk (TTFC) = wall time from calling `stream(text)` to its first audio chunk.
Systems are measured in turn on each sentence (voice, teacher, voice, teacher, ...), so a change
of machine load during the run hits both alike; the ratios voice / teacher are the headline.
With CUDA present the voice is measured on the GPU too (the teacher always runs on CPU: onnxruntime).

Run by hand, e.g.:
    nice -n 10 python benchmarks/bench_speed.py --voice default --sentences 20 --out bench.json
    python benchmarks/bench_speed.py --teacher-only --sentences 5
    python benchmarks/bench_speed.py --voice joe --weights float32 --weights bfloat16 --threads 1
    python benchmarks/bench_speed.py --voice joe --backend torch --backend onnx --threads 1
    python benchmarks/bench_speed.py --voice joe --vocoder voice --vocoder griffinlim --threads 1
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from machine import load_average, machine_info


@dataclass
class SystemTimes:
    """Timings of one system (a voice on a device, or the teacher) over the sentence set."""

    name: str
    device: str
    load_s: float
    backend: str | None = None  # how a voice's Talker ran ('auto' resolved); None for the teacher
    synth_s: list[float] = field(default_factory=list)
    audio_s: list[float] = field(default_factory=list)
    ttfc_s: list[float] = field(default_factory=list)
    stream_s: list[float] = field(default_factory=list)
    stream_audio_s: list[float] = field(default_factory=list)
    chunks: list[int] = field(default_factory=list)

    def summary(self) -> dict:
        audio = sum(self.audio_s)
        return {
            "name": self.name, "device": self.device, "backend": self.backend, "load_s": self.load_s,
            "sentences": len(self.synth_s),
            "audio_s": audio, "synth_s": sum(self.synth_s),
            "rtf": sum(self.synth_s) / audio if audio else None,
            "rtf_stream": sum(self.stream_s) / sum(self.stream_audio_s) if sum(self.stream_audio_s) else None,
            "ttfc_mean_s": statistics.fmean(self.ttfc_s) if self.ttfc_s else None,
            "ttfc_median_s": statistics.median(self.ttfc_s) if self.ttfc_s else None,
            "ttfc_max_s": max(self.ttfc_s) if self.ttfc_s else None,
            "chunks_mean": statistics.fmean(self.chunks) if self.chunks else None,
        }


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def measure(system, times: SystemTimes, text: str, seed: int) -> None:
    """One sentence: a full `synthesize` call, then a `stream` call timed to its first chunk and its end."""
    kwargs = {"seed": seed}
    _sync(times.device)
    t0 = time.perf_counter()
    wav, sr = system.synthesize(text, **kwargs)
    _sync(times.device)
    times.synth_s.append(time.perf_counter() - t0)
    times.audio_s.append(len(np.asarray(wav).reshape(-1)) / sr)
    t0 = time.perf_counter()
    first, n, samples = None, 0, 0
    for chunk in system.stream(text, **kwargs):
        n += 1
        samples += np.asarray(chunk).size
        if first is None:
            _sync(times.device)
            first = time.perf_counter() - t0
    _sync(times.device)
    times.stream_s.append(time.perf_counter() - t0)
    times.stream_audio_s.append(samples / system.sample_rate)  # sampled voices need not repeat the same length
    times.ttfc_s.append(first if first is not None else float("nan"))
    times.chunks.append(n)


def load_systems(args) -> list[tuple[object, SystemTimes]]:
    from codectts.eval.teacher import TeacherVoice

    systems = []
    if not args.teacher_only:
        import torch

        from codectts.infer import Synthesizer

        devices = args.device or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
        voice = None if args.voice in (None, "default") else args.voice
        for device in devices:
            for weights in args.weights or [None]:
                for backend in args.backend or ["auto"]:
                    if backend != "torch" and device != "cpu":
                        continue
                    for vocoder in args.vocoder or [None]:
                        t0 = time.perf_counter()  # load_s includes an ONNX export when the cache lacks it
                        synth = Synthesizer.load(voice, device=device, weights=weights, backend=backend,
                                                 vocoder=None if vocoder == "voice" else vocoder)
                        tags = (weights, backend if args.backend else None, vocoder)
                        name = synth.name + "".join(f":{x}" for x in tags if x)
                        systems.append((synth, SystemTimes(name, device, time.perf_counter() - t0, synth.backend)))
    t0 = time.perf_counter()
    teacher = TeacherVoice()
    systems.append((teacher, SystemTimes(teacher.name, "cpu", time.perf_counter() - t0)))
    return systems


def run(args) -> dict:
    import torch

    from codectts.eval.devset import dev_texts

    if args.threads:
        torch.set_num_threads(args.threads)
    texts = dev_texts(args.set)[: args.sentences]
    info = machine_info()
    systems = load_systems(args)
    for system, times in systems:  # warm-up: first calls pay for allocation, JIT and caches
        for text in texts[: args.warmup]:
            measure(system, SystemTimes(times.name, times.device, 0.0), text, args.seed)
    for i, text in enumerate(texts):
        for system, times in systems:
            measure(system, times, text, args.seed + i)
        print(f"[{i + 1}/{len(texts)}] " + "  ".join(
            f"{t.name}@{t.device} rtf {t.synth_s[-1] / t.audio_s[-1]:.3f} ttfc {t.ttfc_s[-1]:.3f}s"
            for _, t in systems if t.audio_s[-1] > 0), file=sys.stderr)
    results = [t.summary() for _, t in systems]
    teacher = results[-1]
    for r in results[:-1]:
        r["rtf_vs_teacher"] = r["rtf"] / teacher["rtf"] if r["rtf"] and teacher["rtf"] else None
        r["ttfc_vs_teacher"] = (r["ttfc_median_s"] / teacher["ttfc_median_s"]
                                if r["ttfc_median_s"] and teacher["ttfc_median_s"] else None)
    info["loadavg_1m_end"] = load_average()
    return {"benchmark": "speed", "texts": f"codectts dev {args.set}", "n_texts": len(texts),
            "warmup": args.warmup, "seed": args.seed, "machine": info, "systems": results}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--voice", default=None, help="Voice name or folder ('default' = shipped voice).")
    p.add_argument("--teacher-only", action="store_true", help="Measure only the Piper teacher.")
    p.add_argument(
        "--device", action="append", help="Device(s) for the voice (repeatable; default cpu, + cuda if present)."
    )
    p.add_argument("--weights", action="append",
                   help="Talker weight precision (float32, bfloat16; repeatable: one system each, measured in turn).")
    p.add_argument("--vocoder", action="append", choices=["voice", "griffinlim"],
                   help="'voice' (its own vocoder) or 'griffinlim' (repeatable: one system each).")
    p.add_argument("--backend", action="append",
                   help="Talker backend (auto, torch, onnx, onnx-int8; default auto: what the voice runs on; "
                        "repeatable: one system each, measured in turn).")
    p.add_argument("--sentences", type=int, default=20, help="How many dev texts (from the start of the set).")
    p.add_argument("--set", default="sentences", choices=["sentences", "paragraphs"], help="Shipped text set.")
    p.add_argument("--warmup", type=int, default=1, help="Untimed texts per system before measuring.")
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, help="Write the JSON here (printed to stdout as well).")
    args = p.parse_args(argv)
    if args.sentences < 1:
        p.error("--sentences must be >= 1")
    result = run(args)
    text = json.dumps(result, indent=1)
    print(text)
    if args.out:
        from codectts.audio.io import atomic_write_bytes

        atomic_write_bytes(args.out, (text + "\n").encode("utf-8"))
    return 0


if __name__ == "__main__":
    sys.exit(main())

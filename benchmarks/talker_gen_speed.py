#!/usr/bin/env python
"""Talker generation speed alone (no text front end, no codec, no vocoder): frames per second, time to
the first chunk of frames, and the Talker's share of the real-time factor, on CPU or CUDA.

Uses the teacher durations of a code cache's dev split, so it needs only torch (it runs on a bare GPU
box with PYTHONPATH=src). Run by hand, e.g.:
    python benchmarks/talker_gen_speed.py --talker src/codectts/voices/joe/talker \
        --codes /work/corpora/joe-codes --n 10 --out talker_speed.json
"""
from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--talker", required=True, help="talker part folder (config.json + model.safetensors)")
    ap.add_argument("--codes", required=True, help="code cache with a dev split (phonemes + durations)")
    ap.add_argument("--n", type=int, default=10, help="utterances to time")
    ap.add_argument("--chunk-frames", type=int, default=8)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()

    from codectts.data.codecache import CodeCache
    from codectts.infer.talker import TalkerGenerator
    from codectts.models.sampling import SamplingConfig
    from codectts.models.talker import Talker
    from codectts.text.tokenizers import PhonemeTokenizer
    from codectts.train.talker import phoneme_ids

    model = Talker.load(args.talker, args.device).to(getattr(torch, args.dtype))
    gen = TalkerGenerator(model)
    cache = CodeCache(args.codes, "dev")
    tok = PhonemeTokenizer()
    sampling = SamplingConfig(temperature=0.5, top_k=20)
    rows = []
    for i, e in enumerate(cache.entries[: args.n + 1]):  # the first one warms up kernels and caches
        text = torch.tensor([phoneme_ids(e.phonemes, tok)], device=args.device)
        dur = torch.tensor([e.durations], device=args.device)
        sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
        g = torch.Generator(device=args.device).manual_seed(i)
        with torch.inference_mode():
            sync()
            t0 = time.perf_counter()
            first, frames = None, 0
            for chunk in gen.aligned(text, dur, sampling, chunk_frames=args.chunk_frames, generator=g):
                sync()
                first = first if first is not None else time.perf_counter() - t0
                frames += chunk.shape[-1]
            total = time.perf_counter() - t0
        if i > 0:
            rows.append({"frames": frames, "seconds": total, "first_chunk_s": first,
                         "rtf": total / (frames / cache.frame_rate)})
    res = {"talker": args.talker, "device": args.device, "dtype": args.dtype,
           "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else platform.processor(),
           "torch": torch.__version__, "threads": torch.get_num_threads(), "utterances": len(rows),
           "frames_per_s": sum(r["frames"] for r in rows) / sum(r["seconds"] for r in rows),
           "rtf_median": statistics.median(r["rtf"] for r in rows),
           "first_chunk_ms_median": 1000 * statistics.median(r["first_chunk_s"] for r in rows)}
    print(json.dumps(res, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

#!/usr/bin/env python
"""CSM speed on random weights: one training step (forward + backward + AdamW) on a fixed batch, and
frame-by-frame generation (backbone + depth decoder, EOS suppressed), on CPU or CUDA.

Random codes and text of fixed sizes, so it needs no corpus, codec or tokenizer data. Run by hand, e.g.:
    nice -n 10 python benchmarks/csm_speed.py --preset small --threads 1 --out csm_speed.json
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch
from machine import machine_info, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="small")
    ap.add_argument("--n-codebooks", type=int, default=8)
    ap.add_argument("--codebook-size", type=int, default=1024)
    ap.add_argument("--batch", type=int, default=16, help="sequences per training batch")
    ap.add_argument("--text-tokens", type=int, default=65, help="text ids per sequence (BOS and EOS included)")
    ap.add_argument("--frames", type=int, default=240, help="audio frames per sequence (plus one EOS frame)")
    ap.add_argument("--steps", type=int, default=3, help="timed training steps (after one untimed)")
    ap.add_argument("--gen-frames", type=int, default=100, help="frames to generate (0: skip generation)")
    ap.add_argument("--frame-rate", type=float, default=21.5, help="codec frame rate for the real-time factor")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)

    from codectts.infer.csm import CSMGenerator
    from codectts.models.csm import CSM, Segment, build_sequence, collate
    from codectts.models.csm import preset as csm_preset
    from codectts.text.tokenizers import CharTokenizer

    tok = CharTokenizer()
    torch.manual_seed(args.seed)
    cfg = csm_preset(args.preset, text_vocab_size=tok.vocab_size, n_codebooks=args.n_codebooks,
                     codebook_size=args.codebook_size)
    model = CSM(cfg).to(args.device)
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    machine = machine_info()

    seqs = [build_sequence([Segment(torch.randint(3, tok.vocab_size, (args.text_tokens,)).tolist(),
                                    torch.randint(0, args.codebook_size, (args.n_codebooks, args.frames)))],
                           args.n_codebooks, cfg.eos_code) for _ in range(args.batch)]
    batch = [t.to(args.device) for t in collate(seqs)]
    positions = batch[0].numel()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()
    step_s = []
    for i in range(args.steps + 1):  # the first step allocates optimizer state and warms kernels up
        sync()
        t0 = time.perf_counter()
        loss = model(*batch).loss
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sync()
        if i > 0:
            step_s.append(time.perf_counter() - t0)
            print(f"train step {i}: {step_s[-1]:.2f} s ({positions / step_s[-1]:.0f} positions/s)")
    result = {
        "preset": args.preset, "params": model.param_counts()["total"],
        "codes": f"{args.n_codebooks}x{args.codebook_size}", "device": args.device,
        "train": {"batch": list(batch[0].shape), "positions": positions, "step_s": step_s,
                  "step_s_median": statistics.median(step_s),
                  "positions_per_s": positions / statistics.median(step_s)},
    }
    if args.gen_frames:
        gen = CSMGenerator(model.eval(), None, tok)
        gen.generate("warm up", max_frames=4, min_frames=4, seed=args.seed, decode=False)
        sync()
        t0 = time.perf_counter()
        res = gen.generate("the quick brown fox jumps over the lazy dog", max_frames=args.gen_frames,
                           min_frames=args.gen_frames, seed=args.seed, decode=False)
        sync()
        seconds = time.perf_counter() - t0
        frames = res.codes.shape[-1]
        result["generate"] = {"frames": frames, "seconds": seconds, "frames_per_s": frames / seconds,
                              "rtf": seconds / (frames / args.frame_rate), "frame_rate": args.frame_rate}
        print(f"generation: {frames} frames in {seconds:.2f} s = {frames / seconds:.1f} frames/s")
    report(result, args.out, machine)


if __name__ == "__main__":
    main()

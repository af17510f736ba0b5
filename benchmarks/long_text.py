"""Intelligibility on long inputs in ONE pass (issue 10): each dev paragraph (60+ words) is generated
as a single sequence, without sentence splitting, then transcribed by Whisper base.

    python benchmarks/long_text.py --voice VOICE [--out long.json]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--voice", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()

    from codectts.eval.asr import Transcriber, wer_cer
    from codectts.eval.devset import dev_texts
    from codectts.infer import Synthesizer
    from codectts.text.normalize import normalize_text

    synth = Synthesizer.load(args.voice)
    texts = dev_texts("paragraphs")
    asr = Transcriber()
    hyps, audio_s, t0 = [], 0.0, time.perf_counter()
    for i, text in enumerate(texts):
        codes = synth.sentence_codes(normalize_text(text), seed=args.seed + i)  # the whole paragraph at once
        wav = synth.decode_codes(codes)
        audio_s += len(wav) / synth.sample_rate
        hyps.append(asr.transcribe(wav, synth.sample_rate))
    res = {"voice": synth.name, "paragraphs": len(texts), "words": sum(len(t.split()) for t in texts),
           "audio_s": round(audio_s, 2), "wall_s": round(time.perf_counter() - t0, 2),
           "threads": torch.get_num_threads(), **wer_cer(texts, hyps), "hypotheses": hyps}
    print(json.dumps({k: v for k, v in res.items() if k != "hypotheses"}))
    if args.out:
        Path(args.out).write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()

"""Codec comparison table (issue 5): for each codec part, on held-out corpus utterances:
standardised-mel MSE, code usage/perplexity, round trip wav -> codes -> mel -> vocoder -> ASR WER/CER,
bits per second, encode/decode speed. Reference rows: the teacher audio and the unquantised mel
through the same vocoder. Run by hand:

    python benchmarks/codec_table.py --data /work/corpora/joe --codec runs/codec-k4x512/best ... \
        --n 20 --out codec_table.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--codec", nargs="+", required=True, help="codec part folders")
    ap.add_argument("--n", type=int, default=20, help="dev utterances")
    ap.add_argument("--gl-iters", type=int, default=32)
    ap.add_argument("--out", default="codec_table.json")
    args = ap.parse_args()

    from codectts.audio.io import load_audio
    from codectts.codecs.mel_rvq import MelRVQCodec
    from codectts.data.manifest import read_corpus
    from codectts.eval.asr import Transcriber, wer_cer
    from codectts.train.codec import codec_metrics
    from codectts.vocoders import GriffinLim

    utts, root = read_corpus(args.data, "dev")
    utts = utts[: args.n]
    refs = [u.normalized or u.text for u in utts]
    asr = Transcriber()
    rows = []

    def asr_row(name: str, wavs: list[np.ndarray], sr: int, extra: dict) -> None:
        hyps = [asr.transcribe(w, sr) for w in wavs]
        rows.append({"name": name, **wer_cer(refs, hyps), **extra})
        print(json.dumps(rows[-1]))

    first = MelRVQCodec.load(args.codec[0])
    sr = first.sample_rate
    wavs = [load_audio(u.audio_path(root), sr=sr)[0] for u in utts]
    asr_row("teacher audio", wavs, sr, {})
    gl = GriffinLim(first.cfg.mel, n_iter=args.gl_iters)
    mels = [first.melspec(torch.from_numpy(w)[None]) for w in wavs]
    asr_row(f"unquantised mel + Griffin-Lim {args.gl_iters}", [gl(m)[0].numpy() for m in mels], sr, {})
    for path in args.codec:
        codec = MelRVQCodec.load(path)
        sr = codec.sample_rate
        cwavs = [load_audio(u.audio_path(root), sr=sr)[0] for u in utts]
        gl = GriffinLim(codec.cfg.mel, n_iter=args.gl_iters)
        mels = [codec.melspec(torch.from_numpy(w)[None]) for w in cwavs]
        metrics = codec_metrics(codec, [m[0] for m in mels])
        t0 = time.perf_counter()
        codes = [codec.encode_mel(m) for m in mels]
        t_enc = time.perf_counter() - t0
        t0 = time.perf_counter()
        dec = [codec.decode_mel(c) for c in codes]
        t_dec = time.perf_counter() - t0
        audio_s = sum(len(w) for w in cwavs) / sr
        out = [gl(d)[0].numpy() for d in dec]
        asr_row(
            f"{Path(path).parent.name} ({codec.cfg.n_codebooks}x{codec.cfg.codebook_size} @ {codec.frame_rate:.1f} Hz)",
            out,
            sr,
            {
                "recon_mse": metrics["recon_mse"],
                "logmel_l1": metrics["logmel_l1"],
                "usage_min": metrics["usage_min"],
                "perplexity_mean": metrics["perplexity_mean"],
                "bits_per_second": codec.cfg.bits_per_second,
                "encode_rtf": t_enc / audio_s,
                "decode_rtf": t_dec / audio_s,
                "params": sum(p.numel() for p in codec.parameters()),
            },
        )
    info = {
        "machine": {"cpus": torch.get_num_threads(), "platform": platform.platform(), "torch": torch.__version__},
        "n_utterances": len(utts),
        "rows": rows,
    }
    Path(args.out).write_text(json.dumps(info, indent=1))


if __name__ == "__main__":
    main()

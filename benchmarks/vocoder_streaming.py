#!/usr/bin/env python
"""How much future context a streamed vocoder needs: chunked output against the whole-utterance output.

A convolutional vocoder is exact when chunks get its full receptive field of context on each side,
but that is also the streaming latency (a chunk waits for `right` future frames). This measures, on
dev utterances (their codec-decoded mels with --codec, else the real mels), how far chunked output
with `right` = each --right value moves from the whole-utterance output: log-mel L1 against it over
the whole clip and within 2 frames of each seam, and the SNR of the chunked samples against the
whole-utterance samples. Latency of the right context alone = right * hop / sample rate.

    python benchmarks/vocoder_streaming.py --data /work/corpora/joe --vocoder runs/vocos/best \\
        --codec src/codectts/voices/joe/codec --right 2 --right 4 --right 8 --right 16 --out vs.json
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch
from machine import machine_info, report

from codectts.audio.io import load_audio
from codectts.audio.mel import MelSpectrogram
from codectts.data.manifest import read_corpus
from codectts.eval.roundtrip import vocoder_from_arg
from codectts.vocoders import StreamConfig, stream_config_for, vocode_chunked

SEAM_FRAMES = 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="Corpus folder (dev.jsonl) or a .jsonl manifest.")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--n", type=int, default=20, help="Utterances.")
    ap.add_argument("--vocoder", required=True, help="'griffinlim' or a trained vocoder part folder.")
    ap.add_argument("--codec", type=Path, default=None, help="Mel codec part: vocode its decoded mels.")
    ap.add_argument("--chunk", type=int, default=16, help="Mel frames per chunk.")
    ap.add_argument("--right", type=int, action="append", default=[], help="Future frames (repeatable).")
    ap.add_argument("--crossfade", type=int, default=4, help="Crossfade frames (capped at each right).")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    machine = machine_info()

    codec = None
    if args.codec is not None:
        from codectts.codecs.mel_rvq import MelRVQCodec

        codec = MelRVQCodec.load(args.codec)
    voc = vocoder_from_arg(args.vocoder, codec.cfg.mel if codec is not None else None)
    exact = stream_config_for(voc, args.chunk)
    melspec = MelSpectrogram(voc.mel)
    utts, root = read_corpus(args.data, args.split)
    rows: dict[int, list[dict]] = {r: [] for r in args.right}
    for utt in utts[:args.n]:
        wav, _ = load_audio(utt.audio_path(root), sr=voc.sample_rate)
        with torch.no_grad():
            mel = melspec(torch.from_numpy(wav)[None])
            if codec is not None:
                mel = codec.decode_mel(codec.encode_mel(mel))[..., :mel.shape[-1]]
            full = voc(mel).reshape(1, -1)
            full_mel = melspec(full)
            seams = np.arange(args.chunk, mel.shape[-1], args.chunk)
            near = np.unique(np.clip((seams[:, None] + np.arange(-SEAM_FRAMES, SEAM_FRAMES)).ravel(),
                                     0, full_mel.shape[-1] - 1))
            for r in args.right:
                cfg = StreamConfig(args.chunk, left=exact.left, right=r, crossfade_frames=min(args.crossfade, r))
                y = vocode_chunked(voc, mel, cfg).reshape(1, -1)
                diff = (melspec(y) - full_mel).abs()[0]
                noise = (y - full).pow(2).sum().item()
                rows[r].append({"mel_l1_vs_full": float(diff.mean()),
                                "seam_mel_l1_vs_full": float(diff[:, near].mean()),
                                "snr_db_vs_full": 10 * np.log10(full.pow(2).sum().item() / max(noise, 1e-12))})
    result = {"vocoder": args.vocoder, "codec": str(args.codec) if args.codec else None, "chunk": args.chunk,
              "exact_context": exact.left, "utterances": min(args.n, len(utts)),
              "by_right": {r: {"lookahead_audio_ms": 1000 * r * voc.mel.hop_length / voc.sample_rate,
                               **{k: float(np.mean([x[k] for x in v])) for k in v[0]}} for r, v in rows.items()}}
    for r, m in result["by_right"].items():
        print(f"right {r:3d} ({m['lookahead_audio_ms']:.0f} ms of audio): "
              f"log-mel L1 vs full {m['mel_l1_vs_full']:.4f}, "
              f"near seams {m['seam_mel_l1_vs_full']:.4f}, SNR {m['snr_db_vs_full']:.1f} dB")
    report(result, args.out, machine)


if __name__ == "__main__":
    main()

"""Codec comparison table (issue 5): for each codec part, on held-out corpus utterances:
standardised-mel MSE, code usage/perplexity, round trip wav -> codes -> mel -> vocoder -> ASR WER/CER,
bits per second, encode/decode speed. Reference rows: the teacher audio and the unquantised mel
through the same vocoder. `--kmeans 4x1024` adds a baseline with no learned encoder or decoder: plain
residual k-means (K stages of N centroids) fitted on the training split's mel frames, standardised and
stacked as the first codec does. Run by hand:

    python benchmarks/codec_table.py --data /work/corpora/joe --codec runs/codec-k4x512/best ... \
        --n 20 --out codec_table.json
    python benchmarks/codec_table.py --data /work/corpora/joe --codec src/codectts/voices/joe/codec \
        --kmeans 4x1024 --n 15
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine_info, report


class ResidualKMeans:
    """K stages of plain k-means on a mel codec's standardised frames, `stack` mel frames per vector."""

    def __init__(self, codec, mels: list[torch.Tensor], n_codebooks: int, codebook_size: int, max_frames: int,
                 iters: int, seed: int) -> None:
        from codectts.codecs.rvq import kmeans

        self.codec = codec
        x = torch.cat([self._frames(m) for m in mels])
        g = torch.Generator().manual_seed(seed)
        x = x[torch.randperm(len(x), generator=g)[:max_frames]]
        self.books = []
        for _ in range(n_codebooks):
            c = kmeans(x, codebook_size, iters=iters, generator=g)
            x = x - c[torch.cdist(x, c).argmin(1)]
            self.books.append(c)
        self.n_train_frames = len(x)

    def _frames(self, mel: torch.Tensor) -> torch.Tensor:  # [1, M, T] -> [F, M * stack]
        x = self.codec.normalize(self.codec.pad_to_stack(mel))[0]
        m, t = x.shape
        s = self.codec.cfg.stack
        return x.view(m, t // s, s).permute(1, 0, 2).reshape(t // s, m * s)

    def roundtrip(self, mel: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """log-mel [1, M, T] -> (reconstructed log-mel [1, M, T], codes [K, F])."""
        x = self._frames(mel)
        q, codes = torch.zeros_like(x), []
        for c in self.books:
            idx = torch.cdist(x - q, c).argmin(1)
            q, codes = q + c[idx], codes + [idx]
        m, s = mel.shape[1], self.codec.cfg.stack
        recon = q.view(-1, m, s).permute(1, 0, 2).reshape(1, m, -1)
        return self.codec.denormalize(recon)[..., : mel.shape[-1]], torch.stack(codes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", required=True)
    ap.add_argument("--codec", nargs="+", required=True, help="codec part folders")
    ap.add_argument("--n", type=int, default=20, help="dev utterances")
    ap.add_argument("--gl-iters", type=int, default=32)
    ap.add_argument("--kmeans", metavar="KxN", help="also plain residual k-means, K codebooks of N (e.g. 4x1024)")
    ap.add_argument("--kmeans-frames", type=int, default=50_000, help="training frames the k-means is fitted on")
    ap.add_argument("--kmeans-iters", type=int, default=15)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default="codec_table.json")
    args = ap.parse_args()
    machine = machine_info()

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
    if args.kmeans:
        k, n = (int(v) for v in args.kmeans.lower().split("x"))
        train, train_root = read_corpus(args.data, "train")
        order = np.random.default_rng(args.seed).permutation(len(train))
        train_mels, n_frames = [], 0
        for i in order:  # just enough shuffled training utterances for --kmeans-frames vectors
            wav = load_audio(train[i].audio_path(train_root), sr=first.sample_rate)[0]
            train_mels.append(first.melspec(torch.from_numpy(wav)[None]))
            n_frames += train_mels[-1].shape[-1] // first.cfg.stack
            if n_frames >= args.kmeans_frames:
                break
        t0 = time.perf_counter()
        km = ResidualKMeans(first, train_mels, k, n, args.kmeans_frames, args.kmeans_iters, args.seed)
        fit_s = time.perf_counter() - t0
        wavs = [load_audio(u.audio_path(root), sr=first.sample_rate)[0] for u in utts]
        mels = [first.melspec(torch.from_numpy(w)[None]) for w in wavs]
        recon, codes = zip(*(km.roundtrip(m) for m in mels), strict=True)
        se = sum(float(((first.normalize(r) - first.normalize(m)) ** 2).sum())
                 for r, m in zip(recon, mels, strict=True))
        used = torch.zeros(k, n, dtype=torch.bool)
        for c in codes:
            for j in range(k):
                used[j, c[j]] = True
        gl = GriffinLim(first.cfg.mel, n_iter=args.gl_iters)
        asr_row(f"residual k-means {k}x{n} (no training)", [gl(r)[0].numpy() for r in recon], first.sample_rate,
                {"recon_mse": se / sum(m.numel() for m in mels), "usage_min": float(used.float().mean(1).min()),
                 "train_frames": km.n_train_frames, "fit_s": fit_s})
    report({"n_utterances": len(utts), "rows": rows}, args.out, machine)


if __name__ == "__main__":
    main()

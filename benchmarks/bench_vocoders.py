#!/usr/bin/env python
"""Griffin-Lim against trained HiFi-GAN vocoders on held-out corpus audio (copy synthesis).

Each dev utterance's real log-mel is vocoded by every system; the result is compared with the
original audio (`codectts.eval.metrics.compare`: log-mel L1, MR-STFT, PESQ-wb, STOI, SI-SDR) and,
with --asr, transcribed by Whisper base for WER/CER against the text (the original audio is
transcribed too, as the ceiling). RTF = vocoding wall time / audio duration at --threads torch
threads; systems are timed in turn on each utterance so a change of machine load hits all alike.

    nice -n 10 python benchmarks/bench_vocoders.py --data /work/corpora/joe --n 20 \\
        --hifigan runs/vocoder/best --asr --threads 1 --out vocoders.json
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from machine import machine_info, report

from codectts.audio.io import load_audio
from codectts.audio.mel import MelSpectrogram
from codectts.data.manifest import read_corpus
from codectts.eval.metrics import compare, mean_metrics
from codectts.vocoders import GriffinLim, HiFiGAN


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="Corpus folder (dev.jsonl) or a .jsonl manifest.")
    ap.add_argument("--split", default="dev")
    ap.add_argument("--n", type=int, default=20, help="Utterances to score.")
    ap.add_argument("--hifigan", type=Path, action="append", default=[], help="HiFi-GAN part dir (repeatable).")
    ap.add_argument("--gl-iters", type=int, action="append", default=[], help="Griffin-Lim iterations (repeatable).")
    ap.add_argument("--asr", action="store_true", help="Whisper base WER/CER of the resynthesised audio.")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None, help="Write the JSON results here.")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    machine = machine_info()

    utts, root = read_corpus(args.data, args.split)
    utts = utts[:args.n]
    systems: dict[str, object] = {}
    mel_cfg = None
    for path in args.hifigan:
        voc = HiFiGAN.load(path)
        systems[f"hifigan:{path}"] = voc
        mel_cfg = mel_cfg or voc.mel
    if mel_cfg is None:
        from codectts.audio.mel import mel_preset

        mel_cfg = mel_preset("vocoder")
    for n in args.gl_iters or [32]:
        systems[f"griffinlim:{n}"] = GriffinLim(mel_cfg, n_iter=n)
    melspec = MelSpectrogram(mel_cfg)

    rows: dict[str, list[dict]] = {name: [] for name in systems}
    seconds: dict[str, float] = {name: 0.0 for name in systems}
    audio_s = 0.0
    wavs: dict[str, list[np.ndarray]] = {name: [] for name in ["reference", *systems]}
    for u in utts:
        wav, sr = load_audio(u.audio_path(root), sr=mel_cfg.sample_rate)
        with torch.no_grad():
            mel = melspec(torch.from_numpy(wav)[None])
        audio_s += len(wav) / sr
        wavs["reference"].append(wav)
        for name, voc in systems.items():
            t0 = time.perf_counter()
            y = voc(mel)[0, :len(wav)].numpy()
            seconds[name] += time.perf_counter() - t0
            rows[name].append(compare(wav, y, sr))
            wavs[name].append(y)

    result = {"data": str(args.data), "split": args.split, "n": len(utts), "audio_seconds": round(audio_s, 2),
              "systems": {}}
    for name in systems:
        result["systems"][name] = {**mean_metrics(rows[name]), "rtf": seconds[name] / audio_s}
    if args.asr:
        from codectts.eval.asr import Transcriber, wer_cer

        asr = Transcriber()
        texts = [u.text for u in utts]
        for name in ["reference", *systems]:
            hyps = [asr.transcribe(w, mel_cfg.sample_rate) for w in wavs[name]]
            scores = wer_cer(texts, hyps)
            result["systems"].setdefault(name, {}).update(wer=scores["wer"], cer=scores["cer"])
    report(result, args.out, machine)


if __name__ == "__main__":
    main()

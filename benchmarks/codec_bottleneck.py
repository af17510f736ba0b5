"""Where does a mel RVQ codec lose words? The same utterances through four mels, one vocoder, one ASR:

  teacher   the input's own mel (no codec)
  latent    the codec's encoder and decoder with the quantiser skipped (the autoencoder alone)
  codes     encode -> RVQ codes -> decode (the codec as the voices use it)
  codes@k   only the first k codebooks decoded (--prefix k; the rest read as their zero residual)

If `latent` already loses what `codes` loses, a bigger codebook cannot win it back: the encoder's
stacking or the decoder's smoothing does. Prints a table, writes JSON (per-utterance transcripts, so
two rows can be compared with `codectts.eval.asr.paired_wer_bootstrap`).

    python benchmarks/codec_bottleneck.py --wavs heldout/teacher --codec src/codectts/voices/joe/codec \
        --vocoder src/codectts/voices/joe/vocoder --out bench/bottleneck-joe.json

`--wavs DIR`: NAME.wav + NAME.txt pairs (e.g. `codectts eval tts --teacher --save-wavs DIR`).
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch


@torch.no_grad()
def mels_of(codec, mel: torch.Tensor, prefix: int) -> dict[str, torch.Tensor]:
    """The variants' log-mels [1, M, T] for one input log-mel."""
    t = mel.shape[-1]

    def decoded(z: torch.Tensor) -> torch.Tensor:
        return codec.denormalize(codec.decode_latent(z))[..., :t]

    codes = codec.encode_mel(mel)
    out = {"teacher": mel, "latent": decoded(codec.encode_latent(mel)), "codes": decoded(codec.rvq.decode(codes))}
    if prefix:  # the residual VQ decodes any prefix of its codebooks
        out[f"codes@{prefix}"] = decoded(codec.rvq.decode(codes[:, :prefix]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--wavs", type=Path, required=True)
    ap.add_argument("--codec", required=True, help="mel RVQ codec part folder")
    ap.add_argument("--vocoder", default="griffinlim", help="vocoder part folder or griffinlim")
    ap.add_argument("--prefix", type=int, default=0, help="also decode only the first k codebooks")
    ap.add_argument("--limit", type=int, default=None)
    ap.add_argument("--out", type=Path, default=Path("bench/codec_bottleneck.json"))
    args = ap.parse_args()

    from codectts.audio.mel import MelSpectrogram
    from codectts.codecs.mel_rvq import MelRVQCodec
    from codectts.eval.asr import Transcriber, wer_cer
    from codectts.eval.cli import folder_items
    from codectts.eval.roundtrip import prepare_input, vocoder_from_arg

    torch.set_num_threads(1)
    codec = MelRVQCodec.load(args.codec)
    vocoder = vocoder_from_arg(args.vocoder, codec.cfg.mel)
    melspec = MelSpectrogram(codec.cfg.mel)
    asr = Transcriber()
    sr = codec.cfg.mel.sample_rate
    rows: dict[str, dict] = {}
    t0 = time.perf_counter()
    for item in folder_items(args.wavs, None)[:args.limit]:
        wav = prepare_input(item.path, sr).wav  # resampled (warned); None when unreadable, empty or silent
        if wav is None:
            continue
        mel = melspec(torch.from_numpy(wav)[None])
        for variant, m in mels_of(codec, mel, args.prefix).items():
            y = vocoder(m).reshape(-1).float().numpy()
            r = rows.setdefault(variant, {"refs": [], "hyps": [], "ids": []})
            r["refs"].append(item.text)
            r["hyps"].append(asr.transcribe(y, sr))
            r["ids"].append(item.id)
    if not rows:
        raise SystemExit(f"{args.wavs}: no usable wav")
    result = {"codec": args.codec, "vocoder": args.vocoder, "wavs": str(args.wavs), "n": len(rows["teacher"]["ids"]),
              "seconds": round(time.perf_counter() - t0, 1), "rows": {}}
    print(f"| mel | WER | CER |  ({result['n']} utterances, {args.codec} + {args.vocoder})")
    print("|---|---:|---:|")
    for variant, r in rows.items():
        s = wer_cer(r["refs"], r["hyps"])
        result["rows"][variant] = {"wer": s["wer"], "cer": s["cer"], **r}
        print(f"| {variant} | {100 * s['wer']:.1f} % | {100 * s['cer']:.1f} % |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

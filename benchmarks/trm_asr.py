#!/usr/bin/env python
"""Is a trained TTS TRM intelligible? Whisper WER/CER on held-out utterances of its code cache.

For each of the first --n dev utterances the TRM generates codes at the utterance's true length (placed
on the teacher's phoneme durations when the part was trained with `--align durations`), at each
--temperature (top-k --top-k, seed = utterance index); the cache's codec decodes them (a mel codec
through Griffin-Lim). `--soft` adds a row decoded from the expected codec latent instead of drawn
codes (`generate(decode="soft")` + `MelRVQCodec.decode_mel_soft`; docs/trm.md "Soft decoding"). The
same codec decoding the utterance's true codes is the reference row: the best the TRM could do with
this codec and vocoder. Every wav is kept as NAME.wav + NAME.txt, so
`codectts eval asr --wavs DIR/SYSTEM` rescores it. Run by hand, e.g.:
    nice -n 10 python benchmarks/trm_asr.py --part /work/runs/trm-small-dur/best \
        --codes /work/corpora/joe-codes --n 20 --temperature 0 0.8 --soft --wavs-dir trm_wavs --out trm_asr.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from machine import machine_info, report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", required=True, help="TRM part folder (a run's best/ or last/)")
    ap.add_argument("--codes", required=True, help="the code cache it was trained on (dev split used)")
    ap.add_argument("--n", type=int, default=20, help="dev utterances")
    ap.add_argument("--temperature", type=float, nargs="+", default=[0.0, 0.8], help="0 = argmax")
    ap.add_argument("--top-k", type=int, default=50)
    ap.add_argument("--soft", action="store_true", help="add a row decoded from the expected latent (mel codec)")
    ap.add_argument("--gl-iters", type=int, default=32, help="Griffin-Lim iterations for a mel codec")
    ap.add_argument("--wavs-dir", default="trm_asr_wavs")
    ap.add_argument("--out", help="write the figures as JSON here")
    args = ap.parse_args()
    machine = machine_info()

    from codectts.audio.io import save_wav
    from codectts.codecs.registry import load_codec
    from codectts.data.codecache import CodeCache
    from codectts.eval.asr import Transcriber, wer_cer
    from codectts.infer.trm import TRMGenerator, generate
    from codectts.models.sampling import SamplingConfig

    pipe = TRMGenerator.load(args.part)
    cache = CodeCache(args.codes, "dev")
    codec = load_codec(pipe.codec or cache.meta["codec"])
    if getattr(codec, "vocoder", "none") is None:  # a mel codec: decode through Griffin-Lim
        from codectts.vocoders import GriffinLim

        codec.vocoder = GriffinLim(codec.mel, n_iter=args.gl_iters)
    tok = pipe.tokenizer
    aligned = pipe.model.cfg.alignment == "durations"
    entries = cache.entries[: args.n]
    systems: dict[str, list] = {"true codes": [cache.codes(i) for i in range(len(entries))]}
    def run(sampling, decode="codes"):
        codes = []
        for i, e in enumerate(entries):
            speaker = pipe.speaker_id(e.speaker if e.speaker in pipe.speakers else None)
            if aligned and e.phonemes and e.durations:  # the teacher's phonemes, one id each, and durations
                ids = [tok.index[u] for u in e.phonemes]
                codes.append(generate(pipe.model, ids, speaker, durations=e.durations, sampling=sampling, seed=i,
                                      decode=decode))
            else:
                codes.append(generate(pipe.model, tok.encode(e.text), speaker, n_frames=e.n_frames,
                                      sampling=sampling, seed=i, decode=decode))
        return codes

    for temp in args.temperature:
        systems[f"TRM, temperature {temp:g}"] = run(SamplingConfig(temperature=temp, top_k=args.top_k))
    if args.soft:
        systems["TRM, soft"] = run(None, "soft")

    asr = Transcriber()
    refs = [e.text for e in entries]
    rows = []
    for name, codes in systems.items():
        folder = Path(args.wavs_dir) / name.replace(", ", "_").replace(" ", "_")
        hyps = []
        for e, c in zip(entries, codes, strict=True):
            with torch.no_grad():
                if c.is_floating_point():  # soft: [K, F, N] distributions -> the expected latent
                    wav = codec.vocoder(codec.decode_mel_soft(c[None]))[0].reshape(-1).float().numpy()
                else:
                    wav = codec.decode(c[None].long())[0].reshape(-1).float().numpy()
            save_wav(folder / f"{e.id}.wav", wav, codec.sample_rate)
            (folder / f"{e.id}.txt").write_text(e.text + "\n", encoding="utf-8")
            hyps.append(asr.transcribe(wav, codec.sample_rate))
        examples = [{"reference": r, "hypothesis": h} for r, h in zip(refs[:3], hyps[:3], strict=True)]
        rows.append({"system": name, "wavs": str(folder), **wer_cer(refs, hyps), "examples": examples})
        print(json.dumps({k: v for k, v in rows[-1].items() if k != "examples"}))
    report({"part": args.part, "codes": args.codes, "n": len(entries), "aligned_on_durations": aligned,
            "top_k": args.top_k, "rows": rows}, args.out, machine)


if __name__ == "__main__":
    main()

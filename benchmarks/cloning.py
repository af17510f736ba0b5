"""Cloning across speakers: does a voice speak like the reference clip's speaker, and intelligibly?

For each speaker of a multi-speaker corpus (e.g. from `codectts corpus merge`), one dev clip of 5-10 s
is the reference; the voice speaks the same N dev sentences from it. Every output is embedded with the
evaluation's speaker encoder (resemblyzer) and compared with each speaker's centroid, the mean embedding
of that speaker's real dev clips other than the reference: a row per reference speaker, a column per
speaker. Cloning works for a speaker when its own column is >= 0.8 and above every other column.
Whisper scores what was said (WER/CER per speaker) and DNSMOS how natural it sounds (OVRL), beside
the same two on N of the speaker's own real dev clips (their own sentences: how the real voice fares).
The real clips' own similarities (each clip to its speaker's centroid, leave-one-out) are the ceiling,
printed first.
With several `--seeds` every sentence is spoken once per seed and the figures pool them (a voice that
draws nothing, e.g. soft-decoded TRM, gives the same audio for every seed).

    python benchmarks/cloning.py --voice VOICE --data MERGED --held-out ked --n 10 --seeds 0,1 --out cloning.json
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict

import numpy as np
import soundfile as sf

from codectts.data.manifest import read_corpus
from codectts.eval.asr import Transcriber, wer_cer
from codectts.eval.devset import dev_texts
from codectts.eval.naturalness import default_dnsmos, dnsmos_summary
from codectts.eval.speaker import embed, similarity
from codectts.infer.synthesizer import Synthesizer


def pick_reference(utts, lo: float = 5.0, hi: float = 10.0):
    fits = [u for u in utts if lo <= u.duration <= hi]
    return fits[0] if fits else max((u for u in utts if u.duration <= hi), key=lambda u: u.duration)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--voice", required=True, help="A cloning voice (folder or name).")
    ap.add_argument("--data", required=True, help="Multi-speaker corpus whose dev clips are references.")
    ap.add_argument("--n", type=int, default=10, help="Dev sentences spoken per reference.")
    ap.add_argument("--held-out", default="", help="Comma-separated speakers not in the voice's training.")
    ap.add_argument("--seeds", default="0", help="Comma-separated sampling seeds (figures pool them).")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="cloning.json")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    dev, root = read_corpus(args.data, "dev")
    by_speaker = defaultdict(list)
    for u in dev:
        by_speaker[u.speaker].append(u)
    speakers = sorted(by_speaker)
    refs = {s: pick_reference(by_speaker[s]) for s in speakers}
    real = {}  # speaker -> [(id, embedding)] of real dev clips
    for s in speakers:
        for u in by_speaker[s]:
            wav, sr = sf.read(u.audio_path(root), dtype="float32")
            real.setdefault(s, []).append((u.id, embed(wav, sr)))
    centroid = {s: np.mean([e for i, e in real[s] if i != refs[s].id], axis=0) for s in speakers}
    ceiling = {}
    for s in speakers:  # each real clip against its own centroid without it, and against the others'
        own = [similarity(e, np.mean([f for j, f in real[s] if j != i], axis=0)) for i, e in real[s]]
        other = max(float(np.mean([similarity(e, centroid[t]) for _, e in real[s]])) for t in speakers if t != s)
        ceiling[s] = {"own": float(np.mean(own)), "best_other": other, "clips": len(own)}
        print(f"real {s}: own {ceiling[s]['own']:.3f}, nearest other speaker {other:.3f} ({len(own)} clips)")

    seeds = [int(x) for x in args.seeds.split(",")]
    synth = Synthesizer.load(args.voice)
    texts = dev_texts()[: args.n]
    asr = Transcriber()
    real_wer = {}
    for s in speakers:  # the real voice on its own sentences: what Whisper makes of the speaker itself
        clips = [u for u in by_speaker[s] if u.id != refs[s].id][: args.n]
        audio = [sf.read(u.audio_path(root), dtype="float32") for u in clips]
        real_wer[s] = wer_cer([u.text for u in clips], [asr.transcribe(*a) for a in audio])
        ceiling[s]["wer"], ceiling[s]["cer"] = real_wer[s]["wer"], real_wer[s]["cer"]
        ceiling[s]["dnsmos"] = dnsmos_summary([{"dnsmos": default_dnsmos().score(*a)} for a in audio])
        print(f"real {s}: WER {real_wer[s]['wer']:.3f}, OVRL {ceiling[s]['dnsmos']['ovrl']:.2f} on {len(clips)} "
              f"of its own dev clips")
    rows = {}
    for s in speakers:
        ref = refs[s]
        wav, sr = sf.read(ref.audio_path(root), dtype="float32")
        reference = synth.reference(ref.audio_path(root), ref.text)
        ref_emb = embed(wav, sr)
        sims, hyps, scores, audio_s = defaultdict(list), [], [], 0.0
        for seed in seeds:
            for text in texts:
                out, out_sr = synth.synthesize(text, seed=seed, reference=reference)
                audio_s += len(out) / out_sr
                e = embed(out, out_sr)
                for t in speakers:
                    sims[t].append(similarity(e, centroid[t]))
                sims["reference clip"].append(similarity(e, ref_emb))
                hyps.append(asr.transcribe(out, out_sr))
                scores.append({"dnsmos": default_dnsmos().score(out, out_sr)})
        mean = {t: float(np.mean(v)) for t, v in sims.items()}
        others = max(mean[t] for t in speakers if t != s)
        rows[s] = {"reference": ref.id, "reference_seconds": ref.duration, "similarity": mean,
                   "own": mean[s], "best_other": others, "passes": mean[s] >= 0.8 and mean[s] > others,
                   "held_out": s in args.held_out.split(","), **wer_cer(texts * len(seeds), hyps),
                   "dnsmos": dnsmos_summary(scores), "audio_seconds": audio_s}
        print(f"clone {s}{' (held out)' if rows[s]['held_out'] else ''}: own {mean[s]:.3f}, best other "
              f"{others:.3f}, reference clip {mean['reference clip']:.3f}, WER {rows[s]['wer']:.3f}, "
              f"OVRL {rows[s]['dnsmos']['ovrl']:.2f}, "
              f"{'PASS' if rows[s]['passes'] else 'fail'}")
    header = "reference \\ speaker " + " ".join(f"{t:>8}" for t in speakers)
    print(header)
    for s in speakers:
        print(f"{s:>19} " + " ".join(f"{rows[s]['similarity'][t]:8.3f}" for t in speakers))
    result = {"voice": args.voice, "data": args.data, "n": args.n, "seeds": seeds, "speakers": speakers,
              "real": ceiling, "clones": rows}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()

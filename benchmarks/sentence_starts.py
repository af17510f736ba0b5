"""What happens in the first 300 ms of a sentence: the shipped voice against the Piper teacher (issue 15).

Two measurements (docs/talker.md, "Sentence starts"):

    python benchmarks/sentence_starts.py frames --n 30 --out starts_frames.json
        per dev sentence: the teacher's phonemes and durations (re-timed to codec frames) against our
        tokenizer's and the duration model's for the leading "^" and the first phonemes; leading
        silence of the teacher's audio, its codec round trip and the voice's (teacher durations and
        duration-model durations); the voice's mel error per codec frame against the teacher's codes
        when it is given the teacher's durations (first 300 ms vs the rest).
    python benchmarks/sentence_starts.py asr --n 40 --seeds 0,1,2 --lead-in 0.15 --out starts_asr.json
        the voice's dev sentences transcribed twice, as synthesized and with `--lead-in` seconds of
        silence before them (the same audio: a paired test of whether Whisper misses onsets that start
        within a few tens of ms of the file start); WER by position beside the teacher's transcripts
        from a saved `codectts eval tts --teacher --out teacher.json` (--teacher-json).

Run under `nice`; the asr part costs about 2 Whisper passes per sentence and seed.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

FIRST_MS = 300.0


def leading_silence_ms(mel: np.ndarray, hop_s: float, below_peak_db: float = 35.0) -> float:
    """Time before the first mel frame within `below_peak_db` of the loudest frame (natural-log mel)."""
    energy = 10 * np.log10(np.exp(2 * mel).mean(0) + 1e-10)
    return float(np.argmax(energy > energy.max() - below_peak_db) * hop_s * 1000)


def frames(args) -> dict:
    from codectts.data.alignment import convert_durations
    from codectts.data.corpus import TEACHER_HOP, TEACHER_SR, _load_teacher, synthesize_aligned
    from codectts.eval.devset import dev_texts
    from codectts.infer import Synthesizer

    syn = Synthesizer.load(args.voice)
    eng, codec = syn.engine, syn.codec
    teacher = _load_teacher()
    sampling, rate = syn.default_sampling, codec.frame_rate
    hop_s = codec.cfg.mel.hop_length / codec.cfg.mel.sample_rate  # one mel frame
    n_first = round(FIRST_MS / 1000 * rate)
    rows = []
    for i, text in enumerate(dev_texts()[: args.n]):
        s = syn.sentences(text)[0]  # the first piece the voice speaks
        wav, phonemes, hop_durs = synthesize_aligned(teacher, s)
        n = sum(hop_durs) * TEACHER_HOP * codec.sample_rate // TEACHER_SR  # hop-aligned, as `codes extract`
        wav = np.pad(wav, (0, max(0, n - len(wav))))[:n]
        t_codes = codec.encode(torch.from_numpy(wav)[None])
        t_durs = convert_durations(hop_durs, TEACHER_SR / TEACHER_HOP, rate, total=t_codes.shape[-1])
        ids = torch.tensor([eng.tokenizer.encode(s)])
        d_pred = eng.duration.predict(ids)
        gen = {}
        for name, durs in (("teacher_durations", torch.from_numpy(t_durs)[None]), ("duration_model", d_pred)):
            g = torch.Generator().manual_seed(args.seed + i)
            gen[name] = torch.cat(list(eng.model.generate_aligned(ids, durs, sampling, generator=g)), -1)
        m_teacher = codec.decode_mel(t_codes)[0].numpy()
        m_voice = codec.decode_mel(gen["teacher_durations"])[0].numpy()
        err = np.abs(m_teacher - m_voice).mean(0).reshape(-1, codec.cfg.stack).mean(1)  # per codec frame
        rows.append({
            "text": s,
            "same_phonemes": [eng.tokenizer.symbols[j] for j in ids[0].tolist()] == phonemes,
            "teacher_durations": t_durs[:5].tolist(), "predicted_durations": d_pred[0, :5].tolist(),
            "total_frames": {"teacher": int(t_durs.sum()), "predicted": int(d_pred.sum())},
            "lead_ms": {"teacher_audio": leading_silence_ms(codec.melspec(torch.from_numpy(wav)[None])[0].numpy(),
                                                            hop_s),
                        "teacher_codes": leading_silence_ms(m_teacher, hop_s),
                        "voice_teacher_durations": leading_silence_ms(m_voice, hop_s),
                        "voice_duration_model": leading_silence_ms(
                            codec.decode_mel(gen["duration_model"])[0].numpy(), hop_s)},
            "mel_l1_first": float(err[:n_first].mean()), "mel_l1_rest": float(err[n_first:].mean()),
            "mel_l1_by_frame": err[:n_first].tolist(),
            "cb0_agree_first": float((t_codes[0, 0, :n_first] == gen["teacher_durations"][0, 0, :n_first]).float()
                                     .mean()),
            "cb0_agree_rest": float((t_codes[0, 0, n_first:] == gen["teacher_durations"][0, 0, n_first:]).float()
                                    .mean()),
        })
        print(f"{i}\t{rows[-1]['lead_ms']}\t{s[:40]}", flush=True)
    lead = {k: [r["lead_ms"][k] for r in rows] for k in rows[0]["lead_ms"]}
    by_frame = np.array([r["mel_l1_by_frame"] for r in rows if len(r["mel_l1_by_frame"]) == n_first])
    summary = {
        "n": len(rows), "same_phonemes": sum(r["same_phonemes"] for r in rows),
        "first_frames": n_first,
        "bos_frames": {"teacher_mean": float(np.mean([r["teacher_durations"][0] for r in rows])),
                       "predicted_mean": float(np.mean([r["predicted_durations"][0] for r in rows])),
                       "teacher_counts": np.bincount([r["teacher_durations"][0] for r in rows]).tolist(),
                       "predicted_counts": np.bincount([r["predicted_durations"][0] for r in rows]).tolist()},
        "first3_phoneme_frames": {
            "teacher_mean": float(np.mean([sum(r["teacher_durations"][1:4]) for r in rows])),
            "predicted_mean": float(np.mean([sum(r["predicted_durations"][1:4]) for r in rows]))},
        "predicted_over_teacher_length": float(sum(r["total_frames"]["predicted"] for r in rows)
                                               / sum(r["total_frames"]["teacher"] for r in rows)),
        "lead_ms": {k: {"mean": float(np.mean(v)), "median": float(np.median(v))} for k, v in lead.items()},
        "mel_l1_first": float(np.mean([r["mel_l1_first"] for r in rows])),
        "mel_l1_rest": float(np.mean([r["mel_l1_rest"] for r in rows])),
        "mel_l1_by_frame": by_frame.mean(0).round(3).tolist(),
        "cb0_agree_first": float(np.mean([r["cb0_agree_first"] for r in rows])),
        "cb0_agree_rest": float(np.mean([r["cb0_agree_rest"] for r in rows])),
    }
    return {"rows": rows, "summary": summary}


def asr(args) -> dict:
    from codectts.eval.asr import Transcriber, utterance_scores, wer_cer
    from codectts.eval.devset import dev_texts
    from codectts.eval.positions import position_scores
    from codectts.infer import Synthesizer
    from codectts.text.normalize import normalize_for_wer

    texts = dev_texts()[: args.n]
    syn = Synthesizer.load(args.voice)
    asr_ = Transcriber()
    lead = np.zeros(round(args.lead_in * syn.sample_rate), dtype=np.float32)
    seeds = [int(x) for x in args.seeds.split(",")]
    hyps: dict[str, list[str]] = {"as_synthesized": [], "lead_in": []}
    refs = []
    t0 = time.perf_counter()
    for s in seeds:
        for i, text in enumerate(texts):
            wav, sr = syn.synthesize(text, seed=s + i)  # the seeds of `codectts eval tts --seeds`
            refs.append(text)
            hyps["as_synthesized"].append(asr_.transcribe(wav, sr))
            hyps["lead_in"].append(asr_.transcribe(np.concatenate([lead, wav]), sr))
            print(f"seed {s} {i}\t{hyps['as_synthesized'][-1]}\t|\t{hyps['lead_in'][-1]}", flush=True)
    out: dict = {"n": len(texts), "seeds": seeds, "lead_in_s": args.lead_in, "seconds": time.perf_counter() - t0,
                 "texts": texts, "hypotheses": hyps, "variants": {}}
    for name, h in hyps.items():
        per_seed = [wer_cer(refs[k * len(texts):(k + 1) * len(texts)], h[k * len(texts):(k + 1) * len(texts)])["wer"]
                    for k in range(len(seeds))]
        scores = utterance_scores(refs, h)
        out["variants"][name] = {**wer_cer(refs, h), "wer_seeds": per_seed,
                                 "positions": position_scores([x["ref_norm"] for x in scores],
                                                              [x["hyp_norm"] for x in scores])}
    if args.teacher_json:
        utts = json.loads(Path(args.teacher_json).read_text(encoding="utf-8"))["utterances"]
        by_text = {u["text"]: u["hypothesis"] for u in utts}
        t_h = [by_text[t] for t in texts]
        out["teacher"] = {**wer_cer(texts, t_h), "positions": position_scores(
            [normalize_for_wer(t) for t in texts], [normalize_for_wer(h) for h in t_h])}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("part", choices=["frames", "asr"])
    ap.add_argument("--voice", default=None, help="voice name or folder (default: the shipped voice)")
    ap.add_argument("--n", type=int, default=30, help="first N dev sentences")
    ap.add_argument("--seed", type=int, default=0, help="frames: sampling seed of sentence i is seed + i")
    ap.add_argument("--seeds", default="0,1,2", help="asr: sampling seeds (as `eval tts --seeds`)")
    ap.add_argument("--lead-in", type=float, default=0.15, help="asr: seconds of silence before the audio")
    ap.add_argument("--teacher-json", default=None, help="asr: a saved `eval tts --teacher --out` JSON")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    res = frames(args) if args.part == "frames" else asr(args)
    print(json.dumps(res.get("summary") or {k: v for k, v in res.items() if k not in ("texts", "hypotheses")},
                     indent=1))
    if args.out:
        args.out.write_text(json.dumps(res, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

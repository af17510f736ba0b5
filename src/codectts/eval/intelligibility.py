"""Intelligibility runs: score existing audio files, or synthesize a text set with a voice and score that.

Both return a JSON-ready dict: `utterances` (one record each) and `summary` (corpus-level WER/CER,
where in the sentence the errors fall (`eval/positions.py`), speed, duration statistics, and DNSMOS
means when a `naturalness` scorer is given).
`evaluate_voice_seeds` repeats a voice's run over several sampling seeds: one seed's WER moves by
points on 100 sentences, so a voice is judged on the mean over seeds with its spread.
Anything that speaks (`codectts.infer.Synthesizer`, the Piper teacher) fits the `Voice` protocol.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from codectts.audio.io import atomic_write_bytes, load_audio, save_wav
from codectts.errors import CodecTTSError, DataError
from codectts.eval.asr import Transcriber, utterance_scores, wer_cer
from codectts.eval.naturalness import DNSMOS, dnsmos_summary
from codectts.eval.positions import position_scores
from codectts.text.normalize import normalize_for_wer

log = logging.getLogger(__name__)


class Voice(Protocol):
    name: str
    sample_rate: int

    def synthesize(self, text: str, **kwargs) -> tuple[np.ndarray, int]: ...


@dataclass(frozen=True)
class AudioItem:
    id: str
    text: str
    path: Path


def duration_stats(durations: list[float]) -> dict:
    d = np.asarray(durations, dtype=np.float64)
    if d.size == 0:
        return {"total_s": 0.0}
    return {"total_s": float(d.sum()), "mean_s": float(d.mean()), "median_s": float(np.median(d)),
            "min_s": float(d.min()), "max_s": float(d.max())}


def _summary(records: list[dict], asr_seconds: float) -> dict:
    scores = wer_cer([r["text"] for r in records], [r["hypothesis"] for r in records])
    audio_s = sum(r["duration_s"] for r in records)
    chars = sum(len(normalize_for_wer(r["text"])) for r in records)
    dnsmos = dnsmos_summary(records)
    if dnsmos is not None:
        scores["dnsmos"] = dnsmos
    return {**scores, "positions": position_scores([r["ref_norm"] for r in records], [r["hyp_norm"] for r in records]),
            "durations": duration_stats([r["duration_s"] for r in records]),
            "chars_per_second": chars / audio_s if audio_s > 0 else None,
            "asr_seconds": asr_seconds, "asr_s_per_audio_s": asr_seconds / audio_s if audio_s > 0 else None}


def _score(records: list[dict]) -> None:
    for r, s in zip(
        records, utterance_scores([r["text"] for r in records], [r["hypothesis"] for r in records]), strict=False
    ):
        r.update(s)


def pair_texts_and_wavs(texts: list[str], wavs: list[Path], ids: list[str] | None = None) -> list[AudioItem]:
    """Zip texts with wavs; different counts are an error, never a silent truncation."""
    if len(texts) != len(wavs):
        raise DataError(f"{len(texts)} text(s) but {len(wavs)} wav(s): each wav needs exactly one text")
    ids = ids or [p.stem for p in wavs]
    return [AudioItem(i, t, Path(p)) for i, t, p in zip(ids, texts, wavs, strict=False)]


def evaluate_files(
    items: list[AudioItem], transcriber: Transcriber, progress: Callable[[dict], None] | None = None,
    naturalness: DNSMOS | None = None,
) -> dict:
    """Transcribe each file and score it against its text (empty or silent audio -> "" -> WER 1.0);
    with `naturalness`, rate it with DNSMOS too (silent audio: `dnsmos` None, counted as unscored)."""
    if not items:
        raise DataError("no utterances to evaluate")
    records, asr_s = [], 0.0
    for it in items:
        wav, sr = load_audio(it.path, allow_empty=True)
        t0 = time.perf_counter()
        hyp = transcriber.transcribe(wav, sr)
        asr_s += time.perf_counter() - t0
        records.append(
            {"id": it.id, "audio": str(it.path), "text": it.text, "hypothesis": hyp, "duration_s": len(wav) / sr}
        )
        if naturalness is not None:
            records[-1]["dnsmos"] = naturalness.score(wav, sr)
        if progress:
            progress(records[-1])
    _score(records)
    return {"utterances": records, "summary": _summary(records, asr_s)}


def evaluate_voice(
    voice: Voice,
    texts: list[str],
    transcriber: Transcriber,
    seed: int | None = 0,
    save_dir: str | Path | None = None,
    progress: Callable[[dict], None] | None = None,
    naturalness: DNSMOS | None = None,
) -> dict:
    """Synthesize every text (timed), transcribe it, score it. RTF = total synthesis time / total audio time.

    A text the voice fails on (a CodecTTSError) is kept as a failure with an empty hypothesis (WER 1.0),
    so a voice cannot look better by crashing on hard sentences.
    """
    if not texts:
        raise DataError("no texts to synthesize")
    records, asr_s, synth_s = [], 0.0, 0.0
    for i, text in enumerate(texts):
        rec: dict = {"id": f"dev{i:03d}", "text": text}
        kwargs = {} if seed is None else {"seed": seed + i}
        t0 = time.perf_counter()
        try:
            wav, sr = voice.synthesize(text, **kwargs)
        except CodecTTSError as e:
            log.warning("%s failed on %r: %s", voice.name, text[:60], e)
            wav, sr, rec["error"] = np.zeros(0, dtype=np.float32), voice.sample_rate, str(e)
        dt = time.perf_counter() - t0
        synth_s += dt
        wav = np.asarray(wav, dtype=np.float32).reshape(-1)
        rec.update(duration_s=len(wav) / sr, synth_s=dt, rtf=dt / (len(wav) / sr) if len(wav) else None)
        if save_dir is not None and len(wav):
            path = Path(save_dir) / f"{rec['id']}.wav"
            save_wav(path, wav, sr)
            atomic_write_bytes(path.with_suffix(".txt"), (text + "\n").encode("utf-8"))  # `eval asr --wavs` reads these
            rec["audio"] = str(path)
        t0 = time.perf_counter()
        rec["hypothesis"] = transcriber.transcribe(wav, sr)
        asr_s += time.perf_counter() - t0
        if naturalness is not None:
            rec["dnsmos"] = naturalness.score(wav, sr)
        records.append(rec)
        if progress:
            progress(rec)
    _score(records)
    summary = _summary(records, asr_s)
    audio_s = summary["durations"]["total_s"]
    summary.update(
        voice=voice.name,
        sample_rate=voice.sample_rate,
        synth_seconds=synth_s,
        rtf=synth_s / audio_s if audio_s > 0 else None,
        failures=sum("error" in r for r in records),
    )
    return {"utterances": records, "summary": summary}


def evaluate_voice_seeds(
    voice: Voice,
    texts: list[str],
    transcriber: Transcriber,
    seeds: Sequence[int] = (0,),
    save_dir: str | Path | None = None,
    progress: Callable[[dict], None] | None = None,
    naturalness: DNSMOS | None = None,
) -> dict:
    """`evaluate_voice` once per sampling seed (text i of seed s gets seed s + i), pooled.

    Every run scores the same texts, so the pooled corpus-level WER/CER (and each position's rate) is
    exactly the mean over seeds; the summary adds each seed's WER/CER, their min, max and sample
    standard deviation, and keeps each seed's own summary under `per_seed`. Records carry their seed;
    with several seeds the wavs go to `save_dir/seed<S>/`.
    """
    seeds = list(seeds)
    if not seeds or len(set(seeds)) != len(seeds):
        raise DataError(f"seeds must be distinct and at least one, got {seeds}")
    runs = []
    for s in seeds:
        sub = None if save_dir is None else Path(save_dir) / f"seed{s}" if len(seeds) > 1 else save_dir
        run = evaluate_voice(voice, texts, transcriber, seed=s, save_dir=sub, progress=progress,
                             naturalness=naturalness)
        for r in run["utterances"]:
            r["seed"] = s
        runs.append(run)
    records = [r for run in runs for r in run["utterances"]]
    per_seed = [{"seed": s, **run["summary"]} for s, run in zip(seeds, runs, strict=True)]
    summary = _summary(records, sum(p["asr_seconds"] for p in per_seed))
    summary["n"] = len(texts)  # texts, not texts x seeds
    synth_s, audio_s = sum(p["synth_seconds"] for p in per_seed), summary["durations"]["total_s"]
    summary.update(voice=voice.name, sample_rate=voice.sample_rate, synth_seconds=synth_s,
                   rtf=synth_s / audio_s if audio_s > 0 else None, failures=sum(p["failures"] for p in per_seed),
                   seeds=seeds)
    for key in ("wer", "cer"):
        vals = np.array([p[key] for p in per_seed])
        summary[f"{key}_seeds"] = vals.tolist()
        summary[f"{key}_spread"] = {"min": float(vals.min()), "max": float(vals.max()),
                                    "std": float(vals.std(ddof=1)) if len(vals) > 1 else 0.0}
    summary["per_seed"] = per_seed
    return {"utterances": records, "summary": summary}

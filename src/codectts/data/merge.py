"""One multi-speaker corpus from several corpora: `codectts corpus merge --out DIR A=joe B=slt ...`.

Cloning needs speakers a model can tell apart, and our speakers come from different places (the Piper
teacher, Festival voices, your own recordings), each its own corpus folder. A merge writes a manifest
that points at the sources' audio (relative paths, nothing copied) with one speaker id per source, so
every later step (codes, speaker vectors, training) reads one corpus.

Rules that keep a merged corpus honest:
- a source named PATH=SPEAKER becomes that one speaker; a bare PATH keeps its own speaker ids (a merged
  corpus merges again) unless it has only the default one, which takes the folder's name;
- ids become SPEAKER-ID, unique across sources;
- every source has the same sample rate, and all or none carry durations (a Talker/TRM trained with
  `--align durations` needs them on every utterance: run `codectts align` on a source first);
- a train row whose normalised text is a dev sentence of any source is dropped, so no dev sentence is
  heard in training under another speaker's voice;
- `--hours` keeps each speaker's leading train rows up to that much audio (the sources' own order,
  deterministic), so one large source does not drown the others.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

from codectts.data.manifest import Utterance, read_corpus, write_jsonl
from codectts.errors import ConfigError, DataError
from codectts.fileio import atomic_write_bytes

log = logging.getLogger(__name__)


def parse_source(spec: str) -> tuple[Path, str | None]:
    """'PATH=SPEAKER' or 'PATH' (None: keep the source's speakers, or name a single-speaker one after its folder)."""
    path, named, speaker = spec.partition("=")
    if not named:
        return Path(path), None
    speaker = speaker.strip()
    if not speaker or any(c in speaker for c in "/\\ \t"):
        raise ConfigError(f"source {spec!r}: the speaker name must be non-empty, without spaces or slashes")
    return path, speaker


def _text_key(u: Utterance) -> str:
    return " ".join((u.normalized or u.text).lower().split())


def _relabel(utts: list[Utterance], speaker: str | None, root: Path, out: Path) -> list[Utterance]:
    """Ids SPEAKER-ID, audio paths relative to `out`; speaker None keeps each utterance's own speaker."""
    moved = []
    for u in utts:
        spk = speaker or u.speaker
        audio = os.path.relpath(u.audio_path(root).resolve(), out.resolve())
        moved.append(replace(u, id=f"{spk}-{u.id}", speaker=spk, audio=audio))
    return moved


def leading_hours(utts: list[Utterance], hours: float | None) -> list[Utterance]:
    """Each speaker's leading rows up to `hours` of audio, in the source's order."""
    if hours is None:
        return utts
    if any(u.duration <= 0 for u in utts):
        raise DataError("--hours needs each utterance's duration in the manifest (import or build the corpus "
                        "with codectts first)")
    totals: dict[str, float] = {}
    kept = []
    for u in utts:
        if totals.get(u.speaker, 0.0) < hours * 3600:
            kept.append(u)
            totals[u.speaker] = totals.get(u.speaker, 0.0) + u.duration
    return kept


def merge_corpora(out: str | Path, sources: list[str], hours: float | None = None) -> dict:
    """Write out/manifest.jsonl, out/dev.jsonl and out/corpus.json; returns the summary written."""
    out = Path(out)
    if not sources:
        raise ConfigError("corpus merge needs at least one source corpus")
    if hours is not None and hours <= 0:
        raise ConfigError(f"--hours must be positive, got {hours}")
    trains, devs, names, sources_of = {}, {}, [], {}
    for spec in sources:
        path, speaker = parse_source(spec)
        train, root = read_corpus(path, "train")
        dev, _ = read_corpus(path, "dev")
        if not train:
            raise DataError(f"{path}: no training utterances")
        if speaker is None and {u.speaker for u in train} == {"0"}:  # a single-speaker corpus: its folder's name
            speaker = path.name
        train, dev = _relabel(train, speaker, root, out), _relabel(dev, speaker, root, out)
        for spk in dict.fromkeys(u.speaker for u in train):
            if spk in trains:
                raise ConfigError(f"two sources share the speaker {spk!r} (name them: PATH=SPEAKER)")
            names.append(spk)
            trains[spk] = leading_hours([u for u in train if u.speaker == spk], hours)
            devs[spk] = [u for u in dev if u.speaker == spk]
            sources_of[spk] = str(path)
    everything = [u for group in (trains, devs) for utts in group.values() for u in utts]
    rates = {u.sample_rate for u in everything}
    if len(rates) > 1:
        by = {s: sorted({u.sample_rate for u in trains[s]}) for s in names}
        raise DataError(f"the sources have different sample rates {by}: import them with codectts corpus "
                        "import, which resamples to one rate")
    with_durations = {s: all(u.durations for u in trains[s] + devs[s]) for s in names}
    if len(set(with_durations.values())) > 1:
        lacking = [s for s, ok in with_durations.items() if not ok]
        raise DataError(f"sources {lacking} lack phoneme durations and the others have them: run codectts "
                        "align on them first, so that every utterance can train a duration-aligned model")
    dev_texts = {_text_key(u) for utts in devs.values() for u in utts}
    summary = {"speakers": {}, "sources": sorted(set(sources_of.values())), "hours_per_source": hours,
               "sample_rate": rates.pop() if rates else 0, "durations": all(with_durations.values())}
    train_all, dev_all = [], []
    for speaker in names:
        kept = [u for u in trains[speaker] if _text_key(u) not in dev_texts]
        summary["speakers"][speaker] = {
            "source": sources_of[speaker], "train_utterances": len(kept), "dev_utterances": len(devs[speaker]),
            "dropped_dev_text": len(trains[speaker]) - len(kept),
            "train_hours": round(sum(u.duration for u in kept) / 3600, 4)}
        train_all += kept
        dev_all += devs[speaker]
    out.mkdir(parents=True, exist_ok=True)
    write_jsonl(out / "manifest.jsonl", train_all)
    write_jsonl(out / "dev.jsonl", dev_all)
    summary.update(train_utterances=len(train_all), dev_utterances=len(dev_all))
    atomic_write_bytes(out / "corpus.json", (json.dumps(summary, indent=1) + "\n").encode())
    for speaker, s in summary["speakers"].items():
        log.info("%s: %d train (%.2f h), %d dev, %d train rows dropped as dev sentences", speaker,
                 s["train_utterances"], s["train_hours"], s["dev_utterances"], s["dropped_dev_text"])
    return summary

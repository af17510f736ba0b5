"""`codectts codes extract`: encode a corpus once into a code cache (see data/codecache.py)."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from codectts.audio.io import load_audio
from codectts.data.alignment import convert_durations
from codectts.data.codecache import CacheEntry, write_cache_meta, write_codes, write_index
from codectts.data.manifest import Utterance, read_corpus
from codectts.errors import AudioError, DataError

log = logging.getLogger(__name__)


def cache_entry_for(u: Utterance, n_frames: int, rel: str, codec_rate: float) -> CacheEntry:
    """Index record; teacher durations (mel-hop frames) are re-timed to the codec rate, summing to n_frames."""
    e = CacheEntry(id=u.id, text=u.text, normalized=u.normalized, speaker=u.speaker, n_frames=n_frames, file=rel)
    if u.durations:
        if len(u.durations) != len(u.phonemes):
            raise DataError(f"{u.id}: {len(u.phonemes)} phonemes but {len(u.durations)} durations")
        src_rate = u.sample_rate / u.hop
        e.phonemes = list(u.phonemes)
        e.durations = convert_durations(u.durations, src_rate, codec_rate, total=n_frames).tolist()
    return e


def extract_codes(codec, data: str | Path, out: str | Path, splits=("train", "dev"), progress: bool = True,
                  codec_spec: dict | None = None) -> dict[str, int]:
    from tqdm import tqdm

    out = Path(out)
    write_cache_meta(out, codec_spec or codec.spec(), codec.n_codebooks, codec.codebook_size, codec.frame_rate,
                     codec.sample_rate, str(data))
    counts = {}
    for split in splits:
        try:
            utts, root = read_corpus(data, split)
        except DataError:
            if split == "train":
                raise
            continue
        entries, skipped = [], 0
        for u in tqdm(utts, desc=f"codes[{split}]", unit="utt", disable=not progress):
            rel = f"codes/{u.id}.npy"
            try:
                if (out / rel).exists():  # resume: trust finished files (written atomically)
                    codes = np.load(out / rel)
                else:
                    wav, _ = load_audio(u.audio_path(root), sr=codec.sample_rate)
                    if u.durations:  # keep audio hop-aligned with the teacher's frames
                        n = sum(u.durations) * u.hop * codec.sample_rate // u.sample_rate
                        wav = np.pad(wav, (0, max(0, n - len(wav))))[:n]
                    codes = codec.encode(torch.from_numpy(wav)[None])[0].cpu().numpy()
                    write_codes(out, u.id, codes, codec.codebook_size)
                entries.append(cache_entry_for(u, int(codes.shape[1]), rel, codec.frame_rate))
            except (AudioError, DataError) as e:
                log.warning("skip %s: %s", u.id, e)
                skipped += 1
        write_index(out, entries, split)
        counts[split] = len(entries)
        if skipped:
            log.warning("%s: skipped %d utterance(s)", split, skipped)
    return counts

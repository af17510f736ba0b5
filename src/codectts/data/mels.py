"""Log-mels of a whole corpus, computed once per run (seconds for hours of audio on 2 cores)."""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from codectts.audio.io import load_audio
from codectts.audio.mel import MelConfig, MelSpectrogram
from codectts.data.manifest import Utterance
from codectts.errors import AudioError

log = logging.getLogger(__name__)


@torch.no_grad()
def corpus_mels(utts: list[Utterance], root: Path, cfg: MelConfig, progress: bool = True,
                min_frames: int = 1) -> tuple[list[torch.Tensor], list[Utterance]]:
    """Log-mel [n_mels, T] per readable utterance; unreadable or too-short audio is skipped with a count."""
    from tqdm import tqdm

    melspec = MelSpectrogram(cfg)
    mels, kept, bad = [], [], 0
    for u in tqdm(utts, desc="mels", unit="utt", disable=not progress):
        try:
            wav, _ = load_audio(u.audio_path(root), sr=cfg.sample_rate)
        except AudioError as e:
            log.warning("skip %s: %s", u.id, e)
            bad += 1
            continue
        mel = melspec(torch.from_numpy(wav)[None])[0]
        if mel.shape[-1] < min_frames:
            bad += 1
            continue
        mels.append(mel)
        kept.append(u)
    if bad:
        log.warning("skipped %d of %d utterances (unreadable or shorter than %d frames)", bad, len(utts), min_frames)
    return mels, kept

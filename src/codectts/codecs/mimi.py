"""Kyutai's Mimi codec (24 kHz, 12.5 Hz, up to 32 codebooks x 2048) through `transformers.MimiModel`.

Only a wrapper: the weights come from a local folder (`save_pretrained` layout) or a hub id such as
`kyutai/mimi` found in the local Hugging Face cache. Nothing is downloaded unless the caller opts in
(`local_only=False`, or CODECTTS_ALLOW_DOWNLOAD=1): a voice.json naming a hub id never reaches the
network. transformers' Mimi cannot be trained from scratch here (its quantiser passes no gradient and
random-init codebooks are all zero), so this class never builds an untrained model on its own.

Batches: every item is zero-padded to a whole number of frames before encoding. Mimi is causal, so an
item's codes then do not depend on what else is in the batch (a batch encode equals encoding each item
alone), and an item of T samples always has ceil(T / frame_size) frames.
"""
from __future__ import annotations

import logging
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from codectts.audio.io import resample
from codectts.codecs.base import check_codes
from codectts.errors import AudioError, CheckpointError, ConfigError

log = logging.getLogger(__name__)

DEFAULT_SOURCE = "kyutai/mimi"
ALLOW_DOWNLOAD_ENV = "CODECTTS_ALLOW_DOWNLOAD"  # "1": a hub id missing from the local cache may be downloaded
SEED_N_CODEBOOKS = 32  # seeds 003/004 use all 32 codebooks
CODEC_TYPE = "mimi"


def _looks_like_path(source: str) -> bool:
    """A hub id is 'name' or 'org/name'; anything else (absolute, ./, ~, deeper) is meant as a folder."""
    return source.startswith((".", "/", "~")) or source.count("/") > 1 or Path(source).exists()


def _offline_help(source: str) -> str:
    return (f"Mimi weights {source!r} are not available offline. On a machine with internet run "
            f"`python -c \"from transformers import MimiModel; MimiModel.from_pretrained('{DEFAULT_SOURCE}')"
            f".save_pretrained('mimi')\"`, copy the 'mimi' folder here and pass its path "
            f"(e.g. --codec-path ./mimi), or set {ALLOW_DOWNLOAD_ENV}=1 to let codectts download it")


class MimiCodec:
    """`Codec` over a loaded `transformers.MimiModel`, using its first `n_codebooks` quantizers."""

    def __init__(self, model: torch.nn.Module, n_codebooks: int = SEED_N_CODEBOOKS, source: str = ""):
        cfg = model.config
        if not 1 <= n_codebooks <= cfg.num_quantizers:
            raise ConfigError(f"n_codebooks must be in 1..{cfg.num_quantizers} for this Mimi model, got {n_codebooks}")
        self.model = model.eval()
        self.source = source
        self.n_codebooks = int(n_codebooks)
        self.codebook_size = int(cfg.codebook_size)
        self.sample_rate = int(cfg.sampling_rate)
        self.frame_rate = float(cfg.frame_rate)
        self.frame_size = int(cfg.frame_size)  # samples per frame (1920 at 24 kHz / 12.5 Hz)
        if abs(self.sample_rate / self.frame_size - self.frame_rate) > 1e-6:
            raise ConfigError(f"Mimi config disagrees with itself: {self.sample_rate} Hz / {self.frame_size} "
                              f"samples per frame != {self.frame_rate} Hz")

    # ---- loading -------------------------------------------------------------------------
    @classmethod
    def load(cls, source: str | os.PathLike = DEFAULT_SOURCE, n_codebooks: int = SEED_N_CODEBOOKS,
             device: str | torch.device = "cpu", local_only: bool | None = None,
             cache_dir: str | os.PathLike | None = None) -> MimiCodec:
        """Load from a local folder, or a hub id from the local HF cache.

        `local_only` (default: on, unless CODECTTS_ALLOW_DOWNLOAD=1) never touches the network; with it off,
        a hub id missing from the cache is downloaded.
        """
        try:
            from transformers import MimiModel
        except ImportError as e:
            raise ConfigError("MimiCodec needs transformers (pip install 'codectts[mimi]')") from e
        src = str(source)
        if _looks_like_path(src):
            folder = Path(src).expanduser()
            if not (folder / "config.json").is_file():
                raise CheckpointError(f"{folder}: not a Mimi folder (no config.json). " + _offline_help(DEFAULT_SOURCE))
            try:
                model = MimiModel.from_pretrained(str(folder), local_files_only=True)
            except (OSError, ValueError) as e:
                raise CheckpointError(f"{folder}: cannot load Mimi weights ({str(e)[:200]})") from None
            return cls(model.to(device), n_codebooks, source=str(folder))
        if local_only is None:
            local_only = os.environ.get(ALLOW_DOWNLOAD_ENV, "") != "1"
        try:
            model = MimiModel.from_pretrained(src, local_files_only=True, cache_dir=cache_dir)
        except (OSError, ValueError):
            if local_only:
                raise CheckpointError(_offline_help(src)) from None
            try:
                model = MimiModel.from_pretrained(src, cache_dir=cache_dir)
            except Exception as e:  # network errors come in many types (requests, httpx, hub errors)
                raise CheckpointError(f"{_offline_help(src)} (download failed: {str(e)[:160]})") from None
        return cls(model.to(device), n_codebooks, source=src)

    @classmethod
    def from_spec(cls, spec: dict, device: str | torch.device = "cpu", **kwargs) -> MimiCodec:
        """Reload the codec a code cache or voice was made with (from `spec()`)."""
        if spec.get("type") != CODEC_TYPE:
            raise ConfigError(f"codec spec is a {spec.get('type')!r}, not {CODEC_TYPE!r}")
        codec = cls.load(spec["source"], spec["n_codebooks"], device=device, **kwargs)
        for key in ("sample_rate", "codebook_size"):
            if spec.get(key) is not None and spec[key] != getattr(codec, key):
                raise ConfigError(f"Mimi at {spec['source']!r} has {key} {getattr(codec, key)}, spec says {spec[key]}")
        return codec

    def spec(self) -> dict:
        return {"type": CODEC_TYPE, "source": self.source, "n_codebooks": self.n_codebooks,
                "codebook_size": self.codebook_size, "sample_rate": self.sample_rate, "frame_rate": self.frame_rate}

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def to(self, device: str | torch.device) -> MimiCodec:
        self.model.to(device)
        return self

    # ---- encode / decode -------------------------------------------------------------------
    def n_frames(self, n_samples: int | torch.Tensor) -> int | torch.Tensor:
        """Frames for `n_samples` at 24 kHz: ceil(T / frame_size)."""
        if isinstance(n_samples, torch.Tensor):
            return torch.div(n_samples + self.frame_size - 1, self.frame_size, rounding_mode="floor")
        return math.ceil(n_samples / self.frame_size)

    @torch.inference_mode()
    def encode(self, wav: torch.Tensor, sr: int | None = None, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """wav [B, T] (or [T]) at `sr` (default: 24 kHz) -> codes [B, K, F] int64.

        `lengths` [B] marks right-padded items; frames past an item's `n_frames(length)` are padding
        (use `encode_batch` to get them trimmed).
        """
        wav = torch.as_tensor(wav)
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        if wav.dim() == 3 and wav.shape[1] == 1:
            wav = wav[:, 0]
        if wav.dim() != 2:
            raise AudioError(f"expected audio [B, T], got {tuple(wav.shape)}")
        if sr is not None and sr != self.sample_rate:
            lens = lengths.tolist() if lengths is not None else [wav.shape[1]] * wav.shape[0]
            return self._pad_codes(self.encode_batch([w[:n] for w, n in zip(wav, lens, strict=False)], sr=sr))
        if wav.shape[1] == 0:
            raise AudioError("cannot encode empty audio")
        if not torch.isfinite(wav).all():
            raise AudioError("audio holds NaN or Inf samples")
        wav = wav.float()
        if lengths is not None:  # zero everything past each item's end so padding content never matters
            keep = torch.arange(wav.shape[1], device=wav.device)[None, :] < lengths.to(wav.device)[:, None]
            wav = wav * keep
        total = self.n_frames(wav.shape[1]) * self.frame_size
        wav = F.pad(wav, (0, total - wav.shape[1]))
        codes = self.model.encode(wav.unsqueeze(1).to(self.device), num_quantizers=self.n_codebooks).audio_codes
        return codes.long().cpu()  # [B, K, F]

    def encode_batch(self, wavs: Sequence[np.ndarray | torch.Tensor], sr: int | None = None) -> list[torch.Tensor]:
        """Items of any length (1-D, at `sr`) -> one codes [K, F_i] each, encoded as one padded batch."""
        if not wavs:
            return []
        items = []
        for i, w in enumerate(wavs):
            w = np.asarray(w.detach().cpu() if isinstance(w, torch.Tensor) else w, dtype=np.float32)
            if w.ndim != 1 or w.size == 0:
                raise AudioError(f"item {i}: expected non-empty mono audio [T], got shape {w.shape}")
            if sr is not None and sr != self.sample_rate:
                w = resample(w, sr, self.sample_rate)
            items.append(torch.from_numpy(w))
        lengths = torch.tensor([len(w) for w in items])
        batch = torch.nn.utils.rnn.pad_sequence(items, batch_first=True)  # [B, T_max]
        codes = self.encode(batch, lengths=lengths)
        return [c[:, :n] for c, n in zip(codes, self.n_frames(lengths).tolist(), strict=False)]

    @staticmethod
    def _pad_codes(items: list[torch.Tensor]) -> torch.Tensor:
        width = max(c.shape[1] for c in items)
        return torch.stack([F.pad(c, (0, width - c.shape[1])) for c in items])

    @torch.inference_mode()
    def decode(self, codes: torch.Tensor, sr: int | None = None) -> torch.Tensor:
        """codes [B, K, F] (or [K, F]) -> wav [B, F * frame_size] at 24 kHz, or resampled to `sr`."""
        codes = check_codes(torch.as_tensor(codes), self.n_codebooks, self.codebook_size)
        if codes.shape[-1] == 0:
            raise ConfigError("cannot decode zero frames")
        wav = self.model.decode(codes.to(self.device)).audio_values[:, 0].float().cpu()  # [B, T]
        if sr is not None and sr != self.sample_rate:
            wav = torch.stack([torch.from_numpy(resample(w.numpy(), self.sample_rate, sr)) for w in wav])
        return wav

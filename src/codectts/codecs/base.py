"""The Codec contract shared by the mel RVQ codec and Mimi.

    sample_rate, frame_rate, n_codebooks, codebook_size
    encode(wav [B, T] float) -> codes [B, K, F] int64
    decode(codes [B, K, F]) -> wav [B, T]
    spec() -> dict   (JSON-able; stored in code caches and voice.json so the right codec is reloaded)

A `MelCodec` (the mel RVQ codec) also decodes codes to log-mels, which a separate vocoder turns into
audio; that is all the Synthesizer and its streaming need to know about it:

    mel: MelConfig                 the mels decode_mel returns (the vocoder must expect the same)
    mel_frames_per_code: int       mel frames per codec frame
    context_frames: int            codec frames on each side that one decoded frame depends on
    decode_mel(codes [B, K, F]) -> log-mel [B, n_mels, F * mel_frames_per_code]
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import torch

from codectts.errors import ConfigError

if TYPE_CHECKING:
    from codectts.audio.mel import MelConfig


@runtime_checkable
class Codec(Protocol):
    sample_rate: int
    frame_rate: float
    n_codebooks: int
    codebook_size: int

    def encode(self, wav: torch.Tensor) -> torch.Tensor: ...

    def decode(self, codes: torch.Tensor) -> torch.Tensor: ...

    def spec(self) -> dict: ...


@runtime_checkable
class MelCodec(Codec, Protocol):
    mel: MelConfig
    mel_frames_per_code: int
    context_frames: int

    def decode_mel(self, codes: torch.Tensor) -> torch.Tensor: ...


def check_codes(codes: torch.Tensor, n_codebooks: int, codebook_size: int) -> torch.Tensor:
    """Validate codes [B, K, F] before decoding: right K, integer, in range."""
    if codes.dim() == 2:
        codes = codes.unsqueeze(0)
    if codes.dim() != 3 or codes.shape[1] != n_codebooks:
        raise ConfigError(f"expected codes [B, {n_codebooks}, F], got {tuple(codes.shape)}")
    if codes.is_floating_point():
        raise ConfigError("codes must be integers")
    if codes.numel() and (codes.min() < 0 or codes.max() >= codebook_size):
        raise ConfigError(f"codes out of range [0, {codebook_size}): min {int(codes.min())}, max {int(codes.max())}")
    return codes.long()

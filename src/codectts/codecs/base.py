"""The Codec contract shared by the mel RVQ codec and Mimi.

    sample_rate, frame_rate, n_codebooks, codebook_size
    encode(wav [B, T] float) -> codes [B, K, F] int64
    decode(codes [B, K, F]) -> wav [B, T]
    spec() -> dict   (JSON-able; stored in code caches and voice.json so the right codec is reloaded)
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import torch

from codectts.errors import ConfigError


@runtime_checkable
class Codec(Protocol):
    sample_rate: int
    frame_rate: float
    n_codebooks: int
    codebook_size: int

    def encode(self, wav: torch.Tensor) -> torch.Tensor: ...

    def decode(self, codes: torch.Tensor) -> torch.Tensor: ...

    def spec(self) -> dict: ...


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

"""Sampling from logits: temperature, top-k, top-p (nucleus), greedy at temperature 0."""
from __future__ import annotations

from dataclasses import dataclass

import torch

from codectts.errors import ConfigError


@dataclass
class SamplingConfig:
    temperature: float = 0.7
    top_k: int | None = 50
    top_p: float | None = None

    def __post_init__(self):
        if self.temperature < 0:
            raise ConfigError("temperature must be >= 0")
        if self.top_k is not None and self.top_k < 1:
            raise ConfigError("top_k must be >= 1")
        if self.top_p is not None and not 0 < self.top_p <= 1:
            raise ConfigError("top_p must be in (0, 1]")


def sample_logits(logits: torch.Tensor, cfg: SamplingConfig, generator: torch.Generator | None = None) -> torch.Tensor:
    """logits [B, V] -> ids [B]."""
    if cfg.temperature == 0:
        return logits.argmax(-1)
    logits = logits.float() / cfg.temperature
    if cfg.top_k is not None and cfg.top_k < logits.shape[-1]:
        kth = torch.topk(logits, cfg.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if cfg.top_p is not None and cfg.top_p < 1:
        sorted_logits, order = logits.sort(-1, descending=True)
        cum = sorted_logits.softmax(-1).cumsum(-1)
        drop = cum - sorted_logits.softmax(-1) > cfg.top_p  # keep the smallest set reaching top_p
        sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
        logits = torch.full_like(logits, float("-inf")).scatter(-1, order, sorted_logits)
    probs = logits.softmax(-1)
    return torch.multinomial(probs, 1, generator=generator)[:, 0]

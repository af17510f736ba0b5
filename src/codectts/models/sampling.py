"""The one sampler every generator uses (Talker, TRM, CSM, and so the Synthesizer, CLI and server).

Temperature 0 is greedy (argmax of the raw logits). Otherwise logits are divided by the temperature,
cut to the top-k, then to the nucleus, and one id is drawn per row with `torch.multinomial`.

Nucleus boundary (top_p): keep the smallest set of most likely tokens whose probability reaches
top_p, i.e. drop a token when the mass of the tokens ranked before it is already >= top_p. The most
likely token always stays, and a token that brings the mass exactly to top_p is the last one kept
(the convention of Holtzman et al. and Hugging Face's TopPLogitsWarper).

`SamplingConfig()` is the one default (temperature 0.6, top-k 20, no nucleus); a voice may set its
own in voice.json "sampling", and callers override single fields per request.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from codectts.errors import ConfigError, GenerationError
from codectts.schema import from_dict

if TYPE_CHECKING:  # torch is imported where sampling happens, so the CLI can read the defaults cheaply
    import torch


@dataclass(frozen=True)
class SamplingConfig:
    temperature: float = 0.6
    top_k: int | None = 20
    top_p: float | None = None

    def __post_init__(self):
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            raise ConfigError(f"temperature must be a finite number >= 0, got {t!r}")
        k = self.top_k
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise ConfigError(f"top_k must be an integer >= 1 (or None), got {k!r}")
        p = self.top_p
        if p is not None and (isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1):
            raise ConfigError(f"top_p must be in (0, 1] (or None), got {p!r}")

    @classmethod
    def from_dict(cls, d: dict, where: str = "sampling") -> SamplingConfig:
        """From voice.json-style {"temperature": .., "top_k": .., "top_p": ..}; missing keys take the defaults."""
        return from_dict(cls, d, where)

    def override(self, temperature: float | None = None, top_k: int | None = None,
                 top_p: float | None = None) -> SamplingConfig:
        """A copy with the fields that are not None replaced (a request's settings over a voice's)."""
        given = {"temperature": temperature, "top_k": top_k, "top_p": top_p}
        return replace(self, **{k: v for k, v in given.items() if v is not None})


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit outside the top-k and outside the nucleus of mass top_p (last dim)."""
    import torch

    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = torch.sort(logits, dim=-1, descending=True)
        probs = sorted_logits.softmax(-1)
        drop_sorted = (probs.cumsum(-1) - probs) >= top_p  # mass strictly before this token already reaches top_p
        # The most likely token always stays, even when top_p rounds to 0 in the logits' dtype (1e-300 in fp32).
        drop_sorted[..., 0] = False
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_logits(logits: torch.Tensor, cfg: SamplingConfig | None = None,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """logits [..., V] -> ids [...] (int64); rows are drawn in row-major order from `generator`."""
    import torch

    cfg = cfg or SamplingConfig()
    if cfg.temperature == 0:
        return logits.argmax(-1)
    flat = filter_logits(logits.float() / cfg.temperature, cfg.top_k, cfg.top_p).reshape(-1, logits.shape[-1])
    try:
        return torch.multinomial(flat.softmax(-1), 1, generator=generator).view(logits.shape[:-1])
    except RuntimeError as e:  # NaN/Inf probabilities: checking first would cost a device sync per draw
        raise GenerationError(f"cannot sample: the model produced non-finite logits ({str(e)[:80]})") from None

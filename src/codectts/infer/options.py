"""Generation options checked once, where a caller hands them to the Synthesizer.

Whatever arrives here (from the CLI, the server, or Python code) is either a valid option or a
ConfigError naming the option and its allowed range: a NaN temperature, a string top_k, a float or
128-bit seed never reach torch, where they would raise TypeError/RuntimeError or silently make noise.
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

from codectts.errors import ConfigError
from codectts.models.sampling import SamplingConfig
from codectts.models.speed import MAX_SPEED, MIN_SPEED

MAX_TEMPERATURE = 10.0  # the server's bound too; far past it the logits are uniform noise
# Temperatures in (0, MIN_TEMPERATURE) are their limit, greedy decoding: logits / 1e-300 overflow to inf
# and softmax gives NaN.
MIN_TEMPERATURE = 1e-4
SEED_RANGE = 2**63  # seeds are non-negative int64 (the server's range); per-sentence seeds wrap within it


def _show(value) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _real(name: str, value, lo: float, hi: float, *, lo_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ConfigError(f"{name} must be a number, got {_show(value)}")
    x = float(value)
    if not math.isfinite(x) or x > hi or x < lo or (lo_open and x == lo):
        raise ConfigError(f"{name} {_show(value)} out of range {'(' if lo_open else '['}{lo:g}, {hi:g}]")
    return x


def _int(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ConfigError(f"{name} must be an integer, got {_show(value)}")
    n = int(value)
    if n < lo or (hi is not None and n >= hi):
        bound = f"[{lo}, {hi})" if hi is not None else f">= {lo}"
        raise ConfigError(f"{name} {_show(value)} out of range {bound}")
    return n


@dataclass(frozen=True)
class Options:
    """Checked options for one request."""

    speed: float
    sampling: SamplingConfig
    seed: int | None

    def sentence_seed(self, i: int) -> int:
        """Seed of the i-th sentence: seed + i, wrapped into int64 (no seed: 0 for every sentence)."""
        return 0 if self.seed is None else (self.seed + i) % SEED_RANGE


def check_options(defaults: SamplingConfig, *, speed=1.0, temperature=None, top_k=None, top_p=None,
                  seed=None) -> Options:
    """Validate the user's options (None = the voice's default) -> Options, or raise ConfigError."""
    speed = _real("speed", speed, MIN_SPEED, MAX_SPEED)
    t = defaults.temperature if temperature is None else _real("temperature", temperature, 0.0, MAX_TEMPERATURE)
    if t < MIN_TEMPERATURE:
        t = 0.0
    k = defaults.top_k if top_k is None else _int("top_k", top_k, 1)
    p = defaults.top_p if top_p is None else _real("top_p", top_p, 0.0, 1.0, lo_open=True)
    seed = None if seed is None else _int("seed", seed, 0, SEED_RANGE)
    return Options(speed, SamplingConfig(temperature=t, top_k=k, top_p=p), seed)

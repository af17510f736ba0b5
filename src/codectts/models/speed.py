"""The speaking-rate range every length source and the duration model accept (> 1 is faster)."""
from __future__ import annotations

import math

from codectts.errors import ConfigError

MIN_SPEED = 0.25
MAX_SPEED = 4.0


def check_speed(speed: float) -> float:
    """Return `speed` as a float, or raise a ConfigError naming the allowed range."""
    try:
        s = float(speed)
    except (TypeError, ValueError):
        raise ConfigError(f"speed must be a number, got {speed!r}") from None
    if not math.isfinite(s) or not MIN_SPEED <= s <= MAX_SPEED:
        raise ConfigError(f"speed {speed!r} out of range [{MIN_SPEED}, {MAX_SPEED}] (1.0 = normal)")
    return s

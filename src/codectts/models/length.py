"""How many codec frames an utterance gets: a swappable piece for non-autoregressive models.

A non-autoregressive model (the TRM) must be told its output length before it runs. The length
comes from a `LengthSource`, so the same model can take it from a character-rate heuristic (the
TRM seed's `len(text) * 3` frames at 12.5 Hz, `CharRateLength`) or from a trained duration model
(`models.duration.DurationLength`, kind "duration_model"), without change.

Every source takes `speed` (> 1 is faster, so fewer frames) and rejects speeds outside
[MIN_SPEED, MAX_SPEED] with a ConfigError. Sources serialise to a small dict (`to_dict`) that a
released model part stores beside its weights; `length_source_from_dict` rebuilds them.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from typing import Protocol, runtime_checkable

from codectts.errors import ConfigError, TextError
from codectts.text.normalize import normalize_text

MIN_SPEED = 0.25
MAX_SPEED = 4.0
# The seed: "~3 frames per character" at Mimi's 12.5 Hz, i.e. 0.24 s per character.
SEED_FRAMES_PER_CHAR = 3.0
SEED_FRAME_RATE = 12.5
SEED_SECONDS_PER_CHAR = SEED_FRAMES_PER_CHAR / SEED_FRAME_RATE


@runtime_checkable
class LengthSource(Protocol):
    """Anything that tells a non-autoregressive model how many frames to produce."""

    def n_frames(self, text: str, speed: float = 1.0) -> int: ...


def check_speed(speed: float) -> float:
    """Return `speed` as a float, or raise a ConfigError naming the allowed range."""
    try:
        s = float(speed)
    except (TypeError, ValueError):
        raise ConfigError(f"speed must be a number, got {speed!r}") from None
    if not math.isfinite(s) or not MIN_SPEED <= s <= MAX_SPEED:
        raise ConfigError(f"speed {speed!r} out of range [{MIN_SPEED}, {MAX_SPEED}] (1.0 = normal)")
    return s


def count_chars(text: str) -> int:
    """Characters the voice will speak: those of the normalised text (numbers spelt out), trimmed."""
    return len(normalize_text(text).strip())


@dataclass(frozen=True)
class CharRateLength:
    """Frames = characters x seconds_per_char x frame_rate / speed, clamped to [min_frames, max_frames].

    The default rate is the seed's (3 frames per character at 12.5 Hz = 0.24 s/char), which is
    slow for real speech; `fit` measures the rate of a corpus instead (what training stores).
    """

    frame_rate: float
    seconds_per_char: float = SEED_SECONDS_PER_CHAR
    min_frames: int = 1
    max_frames: int | None = None

    kind = "char_rate"

    def __post_init__(self):
        if not self.frame_rate > 0:
            raise ConfigError(f"frame_rate must be positive, got {self.frame_rate}")
        if not self.seconds_per_char > 0:
            raise ConfigError(f"seconds_per_char must be positive, got {self.seconds_per_char}")
        if self.min_frames < 1:
            raise ConfigError(f"min_frames must be >= 1, got {self.min_frames}")
        if self.max_frames is not None and self.max_frames < self.min_frames:
            raise ConfigError(f"max_frames {self.max_frames} < min_frames {self.min_frames}")

    @property
    def frames_per_char(self) -> float:
        return self.seconds_per_char * self.frame_rate

    def n_frames(self, text: str, speed: float = 1.0) -> int:
        speed = check_speed(speed)
        n_chars = count_chars(text)
        if n_chars == 0:
            raise TextError(f"text has nothing to speak: {text[:60]!r}")
        n = max(self.min_frames, round(n_chars * self.frames_per_char / speed))
        return n if self.max_frames is None else min(n, self.max_frames)

    @classmethod
    def fit(cls, items: Iterable[tuple[str, int]], frame_rate: float, **kwargs) -> CharRateLength:
        """Measure seconds per character from (text, n_frames) pairs: total frames / total characters.

        A ratio of totals (not a mean of ratios) so short utterances do not dominate.
        """
        chars = frames = 0
        for text, n in items:
            c = count_chars(text)
            if c and n > 0:
                chars += c
                frames += n
        if chars == 0:
            raise ConfigError("cannot fit a character rate: no utterance with text and frames")
        return cls(frame_rate=frame_rate, seconds_per_char=frames / chars / frame_rate, **kwargs)

    def to_dict(self) -> dict:
        return {"kind": self.kind, **asdict(self)}


def _duration_length(d: dict, root=None) -> LengthSource:
    from codectts.models.duration import DurationLength  # torch + a trained part: imported on demand

    return DurationLength.from_dict(d, root=root)


_SOURCES: dict[str, Callable[..., LengthSource]] = {
    CharRateLength.kind: lambda d, root=None: CharRateLength(**{k: v for k, v in d.items() if k != "kind"}),
    "duration_model": _duration_length,
}


def register_length_source(kind: str, from_dict: Callable[..., LengthSource]) -> None:
    """Let another module make its length source loadable by `kind`: `from_dict(d, root=None)`."""
    _SOURCES[kind] = from_dict


def length_source_from_dict(d: dict, root=None) -> LengthSource:
    """Rebuild a stored source; `root` is the folder of the part that stored it (for relative paths)."""
    kind = d.get("kind")
    if kind not in _SOURCES:
        raise ConfigError(f"unknown length source kind {kind!r} (known: {sorted(_SOURCES)})")
    try:
        return _SOURCES[kind](d, root=root)
    except TypeError as e:
        raise ConfigError(f"length source {kind!r}: bad fields ({e})") from None

"""How many codec frames an utterance gets: a swappable piece for non-autoregressive models.

A non-autoregressive model (the TRM) must be told its output length before it runs. The length
comes from a `LengthSource`, so the same model can take it from a character-rate heuristic (the
TRM seed's `len(text) * 3` frames at 12.5 Hz, `CharRateLength`) or from a trained duration model
(`DurationLength`, kind "duration_model"), without change.

Every source takes `speed` (> 1 is faster, so fewer frames) and rejects speeds outside
`models.speed`'s [MIN_SPEED, MAX_SPEED] with a ConfigError. This module imports no torch;
`DurationLength` loads torch and its part when built. Sources serialise to a small dict (`to_dict`) that a
released model part stores beside its weights; `length_source_from_dict` rebuilds them.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

from codectts.errors import CheckpointError, ConfigError, TextError
from codectts.models.speed import check_speed
from codectts.text.normalize import normalize_text

# The seed: "~3 frames per character" at Mimi's 12.5 Hz, i.e. 0.24 s per character.
SEED_FRAMES_PER_CHAR = 3.0
SEED_FRAME_RATE = 12.5
SEED_SECONDS_PER_CHAR = SEED_FRAMES_PER_CHAR / SEED_FRAME_RATE


@runtime_checkable
class LengthSource(Protocol):
    """Anything that tells a non-autoregressive model how many frames to produce."""

    def n_frames(self, text: str, speed: float = 1.0) -> int: ...


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


LENGTH_MODEL_DIR = "length_model"  # a duration model part inside a TRM release (train trm, make-voice)


class DurationLength:
    """A `LengthSource` backed by a trained duration model (issue 10): the utterance gets the sum of the
    predicted phoneme durations, re-timed from the duration model's frame rate to the consumer's
    (e.g. a TRM on 12.5 Hz Mimi codes). Replaces the character-rate guess for non-autoregressive models.

    `path` is a duration part folder; relative paths resolve against `root` (the folder of the part
    that stores this source, so a TRM release can carry its duration model inside it).
    """

    kind = "duration_model"

    def __init__(self, path: str | os.PathLike, frame_rate: float, min_frames: int = 1,
                 max_frames: int | None = None, root: str | os.PathLike | None = None):
        from codectts.models.duration import DurationModel
        from codectts.text.tokenizers import PhonemeTokenizer

        if not frame_rate > 0:
            raise ConfigError(f"frame_rate must be positive, got {frame_rate}")
        if max_frames is not None and max_frames < min_frames:
            raise ConfigError(f"max_frames {max_frames} < min_frames {min_frames}")
        self.path, self.frame_rate = str(path), float(frame_rate)
        self.min_frames, self.max_frames = max(1, int(min_frames)), max_frames
        full = Path(root) / path if root is not None and not Path(path).is_absolute() else Path(path)
        self.model = DurationModel.load(full)
        self.tokenizer = PhonemeTokenizer()
        if self.model.cfg.text_vocab < self.tokenizer.vocab_size:
            raise CheckpointError(f"{full}: duration model has {self.model.cfg.text_vocab} symbols, the phoneme "
                              f"tokenizer {self.tokenizer.vocab_size}")

    def durations(self, text: str, speed: float = 1.0) -> list[int]:
        """Frames per phoneme token of `self.tokenizer.encode(text)`, at the duration model's rate."""
        import torch

        ids = torch.tensor([self.tokenizer.encode(text)])
        return self.model.predict(ids, speed=speed)[0].tolist()

    def frame_durations(self, text: str, speed: float = 1.0) -> list[int]:
        """`durations` re-timed to the consumer's `frame_rate` by rounding their cumulative sum, so the
        total is the rounded total and no phoneme drifts by more than one frame."""
        import torch

        d = self.durations(text, speed)
        src = self.model.cfg.frame_rate
        if abs(src - self.frame_rate) > 1e-3:
            ends = torch.round(torch.cumsum(torch.tensor(d, dtype=torch.float64), 0) * self.frame_rate / src)
            d = torch.diff(ends.long(), prepend=torch.zeros(1, dtype=torch.long)).tolist()
        return [int(x) for x in d]

    def n_frames(self, text: str, speed: float = 1.0) -> int:
        total = sum(self.durations(text, speed))
        n = max(self.min_frames, round(total * self.frame_rate / self.model.cfg.frame_rate))
        return n if self.max_frames is None else min(n, self.max_frames)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "path": self.path, "frame_rate": self.frame_rate,
                "min_frames": self.min_frames, "max_frames": self.max_frames}

    @classmethod
    def from_dict(cls, d: dict, root: str | os.PathLike | None = None) -> DurationLength:
        return cls(**{k: v for k, v in d.items() if k != "kind"}, root=root)


def planned_durations(length, tokenizer, text: str, speed: float = 1.0) -> list[int] | None:
    """Frames per token of `tokenizer.encode(text)` from a duration-model length source (`frame_durations`,
    at the consumer's frame rate); None when it plans no frames at all."""
    d = length.frame_durations(text, speed)
    n_ids = len(tokenizer.encode(text))
    if len(d) != n_ids:
        raise ConfigError(f"the length source gives {len(d)} durations for {n_ids} text tokens (tokenizers differ)")
    return d if sum(d) > 0 else None


def bundle_length_model(length: dict) -> tuple[dict, dict[str, bytes] | None]:
    """A part's length source and the files to write inside the part: a duration model travels in its
    `length_model/` folder (a relative path, so the part can move); other sources need no files."""
    if length.get("kind") != DurationLength.kind:
        return length, None
    src = Path(length["path"])
    files = {f"{LENGTH_MODEL_DIR}/{f.name}": f.read_bytes() for f in src.iterdir() if f.is_file()}
    return {**length, "path": LENGTH_MODEL_DIR}, files


_SOURCES: dict[str, Callable[..., LengthSource]] = {
    CharRateLength.kind: lambda d, root=None: CharRateLength(**{k: v for k, v in d.items() if k != "kind"}),
    DurationLength.kind: DurationLength.from_dict,
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

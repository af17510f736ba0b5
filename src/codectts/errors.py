"""Errors users see. Each names the thing that was wrong (file, line, field) and what to do.

A few meaningful types, all caught by the CLI (one line, exit 2) and the server (4xx/5xx with a
message): pick the one that tells the user where to look.
"""


class CodecTTSError(Exception):
    """Base class: the CLI prints these as one clear line, never a traceback."""


class ConfigError(CodecTTSError):
    """A configuration that is invalid: voice.json, a part's config.json, a CLI flag or a parameter."""


class TextError(CodecTTSError):
    """Text that is empty, too long, or normalises to nothing speakable."""


class AudioError(CodecTTSError):
    """Audio that cannot be read, is empty, has the wrong shape, or holds NaN/Inf."""


class DataError(CodecTTSError):
    """A corpus, manifest or code cache that is malformed."""


class CheckpointError(CodecTTSError):
    """A checkpoint or released part that is missing, corrupt, or does not match what was asked for."""


class TrainingError(CodecTTSError):
    """Training that cannot go on: non-finite loss, a resume state that does not fit the run."""


class GenerationError(CodecTTSError):
    """Generation that cannot go on: a full KV cache, non-finite model output, no frames produced."""

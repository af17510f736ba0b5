"""Errors users see. Each names the thing that was wrong (file, line, field) and what to do."""


class CodecTTSError(Exception):
    """Base class: the CLI prints these as one clear line, never a traceback."""


class AudioError(CodecTTSError):
    """Audio that cannot be read, is empty, or holds NaN/Inf."""


class TextError(CodecTTSError):
    """Text that is empty, or normalises to nothing speakable."""


class ConfigError(CodecTTSError):
    """A config or checkpoint that does not match what was asked for."""


class DataError(CodecTTSError):
    """A corpus, manifest or code cache that is malformed."""

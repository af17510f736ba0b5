"""Inference: voices, the Synthesizer (text -> waveform, streaming), long-text handling.

Names are imported lazily so that `codectts --help` and the server's light modules do not pay
for torch at import time.
"""
from importlib import import_module

_EXPORTS = {"Synthesizer": "codectts.infer.synthesizer", "list_voices": "codectts.infer.voice",
            "resolve_voice": "codectts.infer.voice", "DEFAULT_VOICE": "codectts.infer.voice"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'codectts.infer' has no attribute {name!r}")

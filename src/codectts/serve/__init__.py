"""HTTP serving: `create_app(synthesizers)` builds the FastAPI app (OpenAI-style speech API + web page)
around a `SpeechService` (voices, worker pool, limits).

Imported lazily so `codectts --help` does not pay for FastAPI.
"""
from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from codectts.serve.app import create_app
    from codectts.serve.service import ServeConfig, SpeechRequest, SpeechService, Synthesizer

_EXPORTS = {"create_app": "codectts.serve.app", "ServeConfig": "codectts.serve.service",
            "SpeechRequest": "codectts.serve.service", "SpeechService": "codectts.serve.service",
            "Synthesizer": "codectts.serve.service"}
__all__ = ["ServeConfig", "SpeechRequest", "SpeechService", "Synthesizer", "create_app"]


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'codectts.serve' has no attribute {name!r}")

"""HTTP serving: `create_app(synthesizers)` builds the FastAPI app (OpenAI-style speech API + web page).

Imported lazily so `codectts --help` does not pay for FastAPI.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from codectts.serve.app import ServeConfig, SpeechRequest, Synthesizer, create_app

__all__ = ["ServeConfig", "SpeechRequest", "Synthesizer", "create_app"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from codectts.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'codectts.serve' has no attribute {name!r}")

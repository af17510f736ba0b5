"""Load any codec from its spec (as stored in code caches and voice.json)."""
from __future__ import annotations

from pathlib import Path

from codectts.errors import ConfigError


def load_codec(spec: dict | str | Path, root: Path | None = None, vocoder=None, device: str = "cpu"):
    """A spec dict ({"type": "mel_rvq", "path": ...} / {"type": "mimi", ...}), or a path to a codec part."""
    if not isinstance(spec, dict):
        spec = {"type": "mel_rvq", "path": str(spec)}
    kind = spec.get("type")
    if kind == "mel_rvq":
        from codectts.codecs.mel_rvq import MelRVQCodec

        if not spec.get("path"):
            raise ConfigError("mel_rvq codec spec lacks a 'path' to its weights")
        path = Path(spec["path"])
        if root is not None and not path.is_absolute():
            path = root / path
        return MelRVQCodec.load(path, vocoder=vocoder, device=device)
    if kind == "mimi":
        from codectts.codecs.mimi import MimiCodec  # written alongside (transformers.MimiModel)

        return MimiCodec.from_spec(spec, device=device)
    raise ConfigError(f"unknown codec type {kind!r}")

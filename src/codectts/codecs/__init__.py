"""Audio codecs: a `Codec` turns audio into integer codes [B, K, F] and back.

Names are imported lazily so that `codectts codes --help` (and `import codectts.cli`) do not pay for torch.
"""
from importlib import import_module

_EXPORTS = {"Codec": "codectts.codecs.base", "MelCodec": "codectts.codecs.base", "check_codes": "codectts.codecs.base"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'codectts.codecs' has no attribute {name!r}")

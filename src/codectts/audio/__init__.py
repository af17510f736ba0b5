"""Audio I/O, resampling and the mel frontend: pure functions on arrays and tensors (imported lazily)."""
from importlib import import_module

_EXPORTS = {"load_audio": "codectts.audio.io", "resample": "codectts.audio.io", "save_wav": "codectts.audio.io",
            "wav_bytes": "codectts.audio.io", "MelConfig": "codectts.audio.mel", "MelSpectrogram": "codectts.audio.mel",
            "MEL_PRESETS": "codectts.audio.mel", "mel_preset": "codectts.audio.mel"}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'codectts.audio' has no attribute {name!r}")

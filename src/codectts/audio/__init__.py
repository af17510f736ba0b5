"""Audio I/O, resampling and the mel frontend: pure functions on arrays and tensors."""
from codectts.audio.io import load_audio, resample, save_wav
from codectts.audio.mel import MEL_PRESETS, MelConfig, MelSpectrogram, mel_preset

__all__ = ["load_audio", "resample", "save_wav", "MelConfig", "MelSpectrogram", "MEL_PRESETS", "mel_preset"]

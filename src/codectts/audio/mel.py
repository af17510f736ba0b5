"""Log-mel frontend on torch.stft with librosa's mel filters, shared by codecs, vocoders and models.

One `MelConfig` describes the features; everything that consumes mels carries the config it
expects, so a mismatch is caught at load time instead of producing noise.
Layout: wav [B, T] -> log-mel [B, n_mels, F] with F = ceil(T / hop) (frames are hop-aligned,
so teacher durations in samples / hop are exact frame counts).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import librosa
import numpy as np
import torch
import torch.nn.functional as F

from codectts.errors import AudioError, ConfigError


@dataclass(frozen=True)
class MelConfig:
    sample_rate: int = 22050
    n_fft: int = 1024
    win_length: int = 1024
    hop_length: int = 256
    n_mels: int = 80
    fmin: float = 0.0
    fmax: float | None = 8000.0
    log_floor: float = 1e-5  # natural log of max(mel, floor): silence sits at log(1e-5) = -11.5
    power: float = 1.0  # magnitude (1) or power (2) spectrogram before the mel filters
    mel_norm: str | None = "slaney"

    def __post_init__(self):
        if self.win_length > self.n_fft:
            raise ConfigError(f"win_length {self.win_length} > n_fft {self.n_fft}")
        if self.hop_length <= 0 or self.n_mels <= 0:
            raise ConfigError("hop_length and n_mels must be positive")
        if self.fmax is not None and self.fmax > self.sample_rate / 2:
            raise ConfigError(f"fmax {self.fmax} above Nyquist {self.sample_rate / 2}")

    @property
    def frame_rate(self) -> float:
        return self.sample_rate / self.hop_length

    @property
    def log_min(self) -> float:
        return math.log(self.log_floor)

    def n_frames(self, n_samples: int) -> int:
        return math.ceil(n_samples / self.hop_length)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> MelConfig:
        return cls(**d)

    def check_compatible(self, other: MelConfig, what: str) -> None:
        """Raise ConfigError when two parts of a pipeline expect different mels."""
        if self != other:
            diff = {k: (v, getattr(other, k)) for k, v in self.to_dict().items() if getattr(other, k) != v}
            raise ConfigError(f"{what}: mel settings differ {diff}")


MEL_PRESETS: dict[str, MelConfig] = {
    # Seeds 000-002: 16 kHz, 128 mels, 80 ms frames (12.5 Hz).
    "seed": MelConfig(sample_rate=16000, n_fft=2048, win_length=2048, hop_length=1280, n_mels=128, fmax=8000.0),
    # Vocoder-grade: the teacher's own rate and hop (Piper joe: 22.05 kHz, hop 256 = 86 Hz).
    "vocoder": MelConfig(sample_rate=22050, n_fft=1024, win_length=1024, hop_length=256, n_mels=80, fmax=8000.0),
    # 16 kHz variant for ASR-rate experiments.
    "16k": MelConfig(sample_rate=16000, n_fft=1024, win_length=1024, hop_length=256, n_mels=80, fmax=8000.0),
}


def mel_preset(name: str) -> MelConfig:
    try:
        return MEL_PRESETS[name]
    except KeyError:
        raise ConfigError(f"unknown mel preset {name!r}; choose from {sorted(MEL_PRESETS)}") from None


def mel_filterbank(cfg: MelConfig) -> torch.Tensor:
    """[n_mels, n_fft // 2 + 1] librosa (Slaney) filters."""
    fb = librosa.filters.mel(sr=cfg.sample_rate, n_fft=cfg.n_fft, n_mels=cfg.n_mels, fmin=cfg.fmin,
                             fmax=cfg.fmax, norm=cfg.mel_norm)
    return torch.from_numpy(np.asarray(fb, dtype=np.float32))


class MelSpectrogram(torch.nn.Module):
    """wav [B, T] (or [T]) -> log-mel [B, n_mels, ceil(T / hop)], batched, CPU or CUDA."""

    def __init__(self, cfg: MelConfig):
        super().__init__()
        self.cfg = cfg
        self.register_buffer("fb", mel_filterbank(cfg), persistent=False)
        self.register_buffer("window", torch.hann_window(cfg.win_length), persistent=False)

    def spectrogram(self, wav: torch.Tensor) -> torch.Tensor:
        """Linear magnitude (or power) spectrogram [B, n_fft//2+1, F], hop-aligned frames."""
        cfg = self.cfg
        if wav.dim() == 1:
            wav = wav.unsqueeze(0)
        if wav.dim() != 2:
            raise AudioError(f"expected audio [B, T], got shape {tuple(wav.shape)}")
        if wav.shape[-1] == 0:
            raise AudioError("cannot compute a mel spectrogram of empty audio")
        n = self.cfg.n_frames(wav.shape[-1])
        left = (cfg.n_fft - cfg.hop_length) // 2
        right = (n - 1) * cfg.hop_length + cfg.n_fft - wav.shape[-1] - left
        mode = "reflect" if max(left, right) < wav.shape[-1] else "constant"
        x = F.pad(wav.unsqueeze(1), (left, right), mode=mode).squeeze(1)
        spec = torch.stft(x, cfg.n_fft, cfg.hop_length, cfg.win_length, self.window.to(x.dtype),
                          center=False, return_complex=True)
        mag = spec.abs()
        return mag.pow(cfg.power) if cfg.power != 1.0 else mag

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        mel = torch.matmul(self.fb.to(wav.dtype), self.spectrogram(wav))
        return torch.log(torch.clamp(mel, min=self.cfg.log_floor))

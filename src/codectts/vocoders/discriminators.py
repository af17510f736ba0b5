"""HiFi-GAN discriminators (training only): multi-period (MPD) and multi-scale (MSD).

MPD folds the wave into [T / p, p] and runs 2-D convs along time, so each sub-discriminator sees
one phase of a period p (pitch and harmonics). MSD runs 1-D grouped convs on the raw wave and on
average-pooled copies (coarser structure). Both return per-sub-discriminator scores and the
feature maps used by the feature-matching loss. `width` scales every channel count so a CPU run
can afford them.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm, weight_norm

from codectts.errors import ConfigError
from codectts.vocoders.hifigan import LRELU_SLOPE

MPD_CHANNELS = (32, 128, 512, 1024, 1024)
MPD_KERNEL, MPD_STRIDE = 5, 3
MSD_CHANNELS = (128, 128, 256, 512, 1024, 1024, 1024)
MSD_KERNELS = (15, 41, 41, 41, 41, 41, 5)
MSD_STRIDES = (1, 2, 2, 4, 4, 1, 1)
MSD_GROUPS = (1, 4, 16, 16, 16, 16, 1)
MIN_CHANNELS = 4


@dataclass
class DiscriminatorConfig:
    periods: tuple[int, ...] = (2, 3, 5)  # the seed's MPD; HiFi-GAN adds 7 and 11
    n_scales: int = 2  # the seed's MSD: raw wave and 2x average-pooled
    width: float = 1.0  # channel multiplier (1.0 = the paper's sizes)

    def __post_init__(self):
        self.periods = tuple(int(p) for p in self.periods)
        if any(p < 2 for p in self.periods) or len(set(self.periods)) != len(self.periods):
            raise ConfigError(f"discriminator periods must be distinct and >= 2, got {list(self.periods)}")
        if self.n_scales < 0 or not self.periods and not self.n_scales:
            raise ConfigError("need at least one period or one scale")
        if not 0 < self.width <= 4:
            raise ConfigError(f"discriminator width must be in (0, 4], got {self.width}")

    def ch(self, n: int, groups: int = 1) -> int:
        """Scaled channel count, kept a multiple of the conv's groups."""
        c = max(MIN_CHANNELS, round(n * self.width))
        return max(groups, c - c % groups)


Features = list[torch.Tensor]


def run_stack(convs: nn.ModuleList, conv_post: nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
    """A sub-discriminator's body: leaky-ReLU convolutions, then the 1-channel score; every layer's output is
    kept as a feature map for the feature-matching loss."""
    fmap = []
    for conv in convs:
        x = F.leaky_relu(conv(x), LRELU_SLOPE)
        fmap.append(x)
    x = conv_post(x)
    fmap.append(x)
    return x.flatten(1), fmap


class PeriodDiscriminator(nn.Module):
    def __init__(self, period: int, cfg: DiscriminatorConfig):
        super().__init__()
        self.period = period
        chans = [1] + [cfg.ch(c) for c in MPD_CHANNELS]
        pad = (MPD_KERNEL - 1) // 2
        self.convs = nn.ModuleList()
        for i in range(len(MPD_CHANNELS)):
            stride = MPD_STRIDE if i < len(MPD_CHANNELS) - 1 else 1
            self.convs.append(weight_norm(nn.Conv2d(chans[i], chans[i + 1], (MPD_KERNEL, 1), (stride, 1), (pad, 0))))
        self.conv_post = weight_norm(nn.Conv2d(chans[-1], 1, (3, 1), 1, (1, 0)))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
        b, c, t = x.shape  # [B, 1, T]
        if t % self.period:
            n_pad = self.period - t % self.period
            x = F.pad(x, (0, n_pad), "reflect" if n_pad < t else "constant")
            t += n_pad
        return run_stack(self.convs, self.conv_post, x.view(b, c, t // self.period, self.period))  # [B, 1, T/p, p]


class ScaleDiscriminator(nn.Module):
    def __init__(self, cfg: DiscriminatorConfig, use_spectral_norm: bool = False):
        super().__init__()
        norm = spectral_norm if use_spectral_norm else weight_norm
        self.convs = nn.ModuleList()
        cin = 1
        for c, k, s, g in zip(MSD_CHANNELS, MSD_KERNELS, MSD_STRIDES, MSD_GROUPS, strict=False):
            cout = cfg.ch(c, g)
            g_eff = g if cin % g == 0 and cout % g == 0 else 1
            self.convs.append(norm(nn.Conv1d(cin, cout, k, s, groups=g_eff, padding=(k - 1) // 2)))
            cin = cout
        self.conv_post = norm(nn.Conv1d(cin, 1, 3, 1, padding=1))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, Features]:
        return run_stack(self.convs, self.conv_post, x)


class Discriminators(nn.Module):
    """MPD + MSD: forward(wav [B, 1, T]) -> (scores per sub-discriminator, feature maps per sub-discriminator)."""

    def __init__(self, cfg: DiscriminatorConfig | None = None):
        super().__init__()
        self.cfg = cfg = cfg or DiscriminatorConfig()
        self.mpd = nn.ModuleList(PeriodDiscriminator(p, cfg) for p in cfg.periods)
        # The first scale (raw wave) uses spectral norm, as in HiFi-GAN.
        self.msd = nn.ModuleList(ScaleDiscriminator(cfg, use_spectral_norm=(i == 0)) for i in range(cfg.n_scales))
        self.pool = nn.AvgPool1d(4, 2, padding=2)

    def forward(self, wav: torch.Tensor) -> tuple[list[torch.Tensor], list[Features]]:
        if wav.dim() == 2:
            wav = wav.unsqueeze(1)
        scores, fmaps = [], []
        for d in self.mpd:
            s, f = d(wav)
            scores.append(s)
            fmaps.append(f)
        x = wav
        for i, d in enumerate(self.msd):
            if i:
                x = self.pool(x)
            s, f = d(x)
            scores.append(s)
            fmaps.append(f)
        return scores, fmaps

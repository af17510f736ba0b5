"""GAN vocoder losses (LSGAN, feature matching, mel L1) and the multi-resolution STFT distance.

The MR-STFT distance doubles as a training loss (warm-up before the discriminators start) and as
an evaluation metric, so training and `benchmarks/` measure the same thing.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from codectts.errors import AudioError

MAG_FLOOR = 1e-7
# (n_fft, hop, win) triples as in Parallel WaveGAN's multi-resolution STFT loss.
MR_STFT_RESOLUTIONS: tuple[tuple[int, int, int], ...] = ((512, 128, 512), (1024, 256, 1024), (2048, 512, 2048))


def discriminator_loss(real: list[torch.Tensor], fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN: real scores towards 1, generated towards 0, summed over sub-discriminators."""
    return sum(torch.mean((1 - r) ** 2) + torch.mean(g ** 2) for r, g in zip(real, fake, strict=False))


def generator_adv_loss(fake: list[torch.Tensor]) -> torch.Tensor:
    """LSGAN: generated scores towards 1."""
    return sum(torch.mean((1 - g) ** 2) for g in fake)


def feature_matching_loss(real: list[list[torch.Tensor]], fake: list[list[torch.Tensor]]) -> torch.Tensor:
    """L1 between discriminator features of real and generated audio (real ones detached)."""
    return sum(
        F.l1_loss(g, r.detach()) for rs, gs in zip(real, fake, strict=False) for r, g in zip(rs, gs, strict=False)
    )


@dataclass
class STFTDistance:
    spectral_convergence: torch.Tensor
    log_magnitude: torch.Tensor

    @property
    def total(self) -> torch.Tensor:
        return self.spectral_convergence + self.log_magnitude


def _magnitude(x: torch.Tensor, n_fft: int, hop: int, win: int) -> torch.Tensor:
    window = torch.hann_window(win, device=x.device, dtype=x.dtype)
    spec = torch.stft(x, n_fft, hop, win, window, center=True, return_complex=True)
    return spec.abs().clamp(min=MAG_FLOOR)


def multi_resolution_stft(
    pred: torch.Tensor, target: torch.Tensor, resolutions: tuple[tuple[int, int, int], ...] = MR_STFT_RESOLUTIONS
) -> STFTDistance:
    """Mean over resolutions of spectral convergence and log-magnitude L1 (wavs [B, T] or [B, 1, T])."""
    pred, target = pred.reshape(pred.shape[0], -1), target.reshape(target.shape[0], -1)
    if pred.shape != target.shape:
        raise AudioError(f"MR-STFT: shapes differ {tuple(pred.shape)} vs {tuple(target.shape)}")
    sc, lm = 0.0, 0.0
    for n_fft, hop, win in resolutions:
        p, t = _magnitude(pred.float(), n_fft, hop, win), _magnitude(target.float(), n_fft, hop, win)
        sc = sc + torch.linalg.norm(t - p) / torch.linalg.norm(t).clamp(min=MAG_FLOOR)
        lm = lm + F.l1_loss(torch.log(p), torch.log(t))
    n = len(resolutions)
    return STFTDistance(sc / n, lm / n)

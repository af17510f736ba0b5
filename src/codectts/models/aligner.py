"""Phoneme aligner: a small acoustic model of text against mel, trained by Viterbi (hard-EM) on the corpus itself.

Each phoneme, seen in context by a convolution stack, predicts a diagonal Gaussian over the
(normalised) log-mel frames it covers. Training alternates two steps on every batch: monotonic
alignment search (models/mas.py) finds each utterance's best hard alignment under the current
model, then the Gaussians are fitted to the frames so assigned (Glow-TTS's maximum-likelihood
alignment without the flow). The first steps use an even split of frames over phonemes (the flat
start of HMM training), so there is no random alignment to recover from. Both steps are cheap on a
CPU: the loss touches each frame once, and the full [frames, phonemes] likelihood is built without
gradients. (A RAD-TTS attention aligner with a CTC forward sum was tried first: on this shared
2-core machine it had not converged on a toy corpus after 150 steps, where this one is exact.)
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from codectts.models.mas import monotonic_alignment_search, monotonic_alignment_search_batch
from codectts.parts import PartConfig, PartModel


@dataclass
class AlignerConfig(PartConfig):
    vocab_size: int
    n_mels: int = 80
    dim: int = 128  # text encoder width
    layers: int = 3
    kernel: int = 5
    deltas: bool = True  # model each frame's slope (x[t+1] - x[t-1]) / 2 too: sharper boundaries
    min_log_std: float = -3.0  # floor of the predicted log standard deviation (normalised mel units)
    sample_rate: int = 22050  # the mel frames durations are counted in
    hop: int = 256


def even_durations(n_tok: int, n_frames: int) -> np.ndarray:
    """The flat start: frames split as evenly as possible over tokens (each gets at least one)."""
    bounds = np.round(np.linspace(0, n_frames, n_tok + 1)).astype(np.int64)
    return np.diff(bounds)


class ConvBlock(nn.Module):
    def __init__(self, dim: int, kernel: int):
        super().__init__()
        self.conv = nn.Conv1d(dim, dim, kernel, padding=kernel // 2)
        self.norm = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:  # x [B, C, L], mask [B, 1, L]
        y = F.relu(self.conv(x * mask))
        return x + self.norm(y.transpose(1, 2)).transpose(1, 2)


class Aligner(PartModel, nn.Module):
    model_type = "aligner"
    config_class = AlignerConfig

    def __init__(self, cfg: AlignerConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.dim, padding_idx=0)
        self.blocks = nn.ModuleList(ConvBlock(cfg.dim, cfg.kernel) for _ in range(cfg.layers))
        self.n_feat = cfg.n_mels * (2 if cfg.deltas else 1)
        self.out = nn.Conv1d(cfg.dim, 2 * self.n_feat, 1)
        # log-mel statistics of the training set, saved with the weights so a reloaded aligner normalises alike
        self.register_buffer("mel_mean", torch.zeros(cfg.n_mels))
        self.register_buffer("mel_std", torch.ones(cfg.n_mels))

    def set_mel_stats(self, mels: list[torch.Tensor]) -> None:
        x = torch.cat([mel.transpose(0, 1) for mel in mels])
        self.mel_mean.copy_(x.mean(0))
        self.mel_std.copy_(x.std(0).clamp_min(1e-3))

    def normalise(self, mel: torch.Tensor) -> torch.Tensor:
        """[B, n_mels, T] log-mel -> [B, T, n_feat] frame features in training-set units (+ slopes)."""
        x = ((mel - self.mel_mean[None, :, None]) / self.mel_std[None, :, None]).transpose(1, 2)
        if not self.cfg.deltas:
            return x
        pad = torch.cat([x[:, :1], x, x[:, -1:]], dim=1)
        return torch.cat([x, 0.5 * (pad[:, 2:] - pad[:, :-2])], dim=-1)

    def token_gaussians(self, text: torch.Tensor, text_lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """text [B, P] -> (mean, log std), each [B, P, n_feat]."""
        mask = (torch.arange(text.shape[1], device=text.device)[None] < text_lengths[:, None])[:, None].float()
        x = self.embed(text).transpose(1, 2)
        for blk in self.blocks:
            x = blk(x, mask)
        mu, log_std = self.out(x * mask).transpose(1, 2).chunk(2, dim=-1)
        return mu, log_std.clamp_min(self.cfg.min_log_std)

    def log_likelihood(self, text, text_lengths, mel, mel_lengths, static: bool = False) -> torch.Tensor:
        """[B, T, P]: log N(frame t; phoneme p's Gaussian) per feature; -inf on padded phonemes.

        `static`: of the log-mel channels alone (without the slopes)."""
        mu, log_std = self.token_gaussians(text, text_lengths)
        x = self.normalise(mel)
        if static:
            mu, log_std, x = mu[..., :self.cfg.n_mels], log_std[..., :self.cfg.n_mels], x[..., :self.cfg.n_mels]
        inv = torch.exp(-2 * log_std)  # [B, P, M]
        quad = (x.pow(2) @ inv.transpose(1, 2) - 2 * x @ (mu * inv).transpose(1, 2)
                + (mu.pow(2) * inv).sum(-1)[:, None, :])
        ll = -0.5 * quad - log_std.sum(-1)[:, None, :] - 0.5 * x.shape[-1] * math.log(2 * math.pi)
        tmask = torch.arange(text.shape[1], device=text.device)[None] < text_lengths[:, None]
        return (ll / x.shape[-1]).masked_fill(~tmask[:, None, :], float("-inf"))

    def nll(self, text, text_lengths, mel, mel_lengths, durations: torch.Tensor) -> torch.Tensor:
        """Mean negative log-likelihood per frame and channel of the mels under a hard alignment [B, P]."""
        mu, log_std = self.token_gaussians(text, text_lengths)
        x = self.normalise(mel)
        idx = torch.zeros(x.shape[:2], dtype=torch.long, device=x.device)
        for b in range(text.shape[0]):
            t = int(mel_lengths[b])
            idx[b, :t] = torch.repeat_interleave(torch.arange(len(durations[b]), device=x.device), durations[b])[:t]
        mask = (torch.arange(x.shape[1], device=x.device)[None] < mel_lengths[:, None]).float()
        gather = idx[..., None].expand(-1, -1, x.shape[2])
        m, ls = mu.gather(1, gather), log_std.gather(1, gather)
        per_frame = (0.5 * ((x - m) * torch.exp(-ls)).pow(2) + ls).mean(-1)
        return (per_frame * mask).sum() / mask.sum() + 0.5 * math.log(2 * math.pi)

    @torch.no_grad()
    def best_durations(self, text, text_lengths, mel, mel_lengths) -> list[np.ndarray]:
        """Monotonic alignment search per utterance under the current model."""
        ll = self.log_likelihood(text, text_lengths, mel, mel_lengths).transpose(1, 2).double().cpu().numpy()
        return monotonic_alignment_search_batch(np.nan_to_num(ll, neginf=-1e30), text_lengths.tolist(),
                                                mel_lengths.tolist())

    @torch.no_grad()
    def align(self, text: list[int], mel: torch.Tensor) -> tuple[np.ndarray, float]:
        """One utterance: phoneme ids, log-mel [n_mels, T] -> (durations [P] summing to T, score).

        The score is the mean log-likelihood per frame and log-mel channel along the hard path. A
        transcript that does not match the audio forces frames onto phonemes whose Gaussians do not
        fit them and scores far below the corpus median (comparing with the frame's best phoneme of
        the same transcript instead misses a transcript that is wrong throughout; the slopes, alike
        for most frames, would dilute it).
        """
        args = torch.tensor([text]), torch.tensor([len(text)]), mel[None], torch.tensor([mel.shape[1]])
        ll = self.log_likelihood(*args)[0].T.double().cpu().numpy()  # [P, T]
        dur = monotonic_alignment_search(ll)
        idx = np.repeat(np.arange(len(text)), dur)
        static = self.log_likelihood(*args, static=True)[0].T.double().cpu().numpy()
        return dur, float(static[idx, np.arange(mel.shape[1])].mean())

"""Residual vector quantization: K codebooks of N entries of dimension D.

Nearest-neighbour lookup, straight-through gradient, commitment loss. Codebooks are either learned
by gradient (`ema=False`, with a codebook loss) or, by default, updated as exponential moving
averages of the vectors assigned to them (VQ-VAE-2 / SoundStream), initialised by k-means on the
first batch, with dead codes (EMA usage below a threshold) restarted from random residuals of the
current batch. Reports per-codebook usage and perplexity.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class RVQOutput:
    quantized: torch.Tensor  # [B, T, D] straight-through (forward value = sum of chosen codewords)
    codes: torch.Tensor  # [B, K, T] int64
    commit_loss: torch.Tensor  # scalar
    codebook_loss: torch.Tensor  # scalar (0 in EMA mode)
    perplexity: torch.Tensor  # [K] exp(entropy of code usage in this batch)
    usage: torch.Tensor  # [K] fraction of codes used at least once in this batch


def kmeans(x: torch.Tensor, n: int, iters: int = 10, generator: torch.Generator | None = None) -> torch.Tensor:
    """Plain k-means on rows of x [M, D] -> [n, D] (samples with replacement when M < n)."""
    m = x.shape[0]
    idx = torch.randperm(m, generator=generator)[:n] if m >= n else torch.randint(0, m, (n,), generator=generator)
    c = x[idx].clone()
    for _ in range(iters):
        assign = torch.cdist(x, c).argmin(1)
        sums = torch.zeros_like(c).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=n).unsqueeze(1).to(x.dtype)
        c = torch.where(counts > 0, sums / counts.clamp(min=1), c)
    return c


class ResidualVQ(nn.Module):
    def __init__(self, *, n_codebooks: int, codebook_size: int, dim: int, ema: bool = True, decay: float = 0.99,
                 dead_threshold: float = 1.0, kmeans_init: bool = True, eps: float = 1e-5):
        super().__init__()
        self.n_codebooks, self.codebook_size, self.dim = n_codebooks, codebook_size, dim
        self.ema, self.decay, self.dead_threshold, self.eps = ema, decay, dead_threshold, eps
        self.codebooks = nn.Parameter(torch.randn(n_codebooks, codebook_size, dim) * 0.1, requires_grad=not ema)
        self.register_buffer("initialized", torch.tensor(not kmeans_init))
        self.register_buffer("ema_count", torch.ones(n_codebooks, codebook_size))
        self.register_buffer("ema_sum", self.codebooks.detach().clone())

    @torch.no_grad()
    def _init_stage(self, k: int, r: torch.Tensor) -> None:
        self.codebooks.data[k] = kmeans(r, self.codebook_size)
        self.ema_sum[k] = self.codebooks.data[k].clone()
        self.ema_count[k].fill_(1.0)

    def nearest(self, r: torch.Tensor, k: int) -> torch.Tensor:
        """r [M, D] -> index of the nearest codeword of codebook k [M]."""
        cb = self.codebooks[k]
        dist = r.pow(2).sum(1, keepdim=True) - 2 * r @ cb.t() + cb.pow(2).sum(1)[None, :]
        return dist.argmin(1)

    @torch.no_grad()
    def _ema_update(self, k: int, r: torch.Tensor, idx: torch.Tensor) -> None:
        onehot_count = torch.bincount(idx, minlength=self.codebook_size).to(r.dtype)
        sums = torch.zeros_like(self.ema_sum[k]).index_add_(0, idx, r)
        self.ema_count[k].mul_(self.decay).add_(onehot_count, alpha=1 - self.decay)
        self.ema_sum[k].mul_(self.decay).add_(sums, alpha=1 - self.decay)
        n = self.ema_count[k].sum()
        count = (self.ema_count[k] + self.eps) / (n + self.codebook_size * self.eps) * n  # Laplace smoothing
        self.codebooks.data[k] = self.ema_sum[k] / count.unsqueeze(1)
        self.restart_dead(k, r)

    @torch.no_grad()
    def restart_dead(self, k: int, r: torch.Tensor) -> int:
        """Replace codes whose EMA usage fell below the threshold by random vectors of this batch."""
        dead = self.ema_count[k] < self.dead_threshold
        n_dead = int(dead.sum())
        if n_dead == 0 or r.shape[0] == 0:
            return 0
        pick = r[torch.randint(0, r.shape[0], (n_dead,), device=r.device)]
        self.codebooks.data[k][dead] = pick
        self.ema_sum[k][dead] = pick
        self.ema_count[k][dead] = 1.0 + self.dead_threshold
        return n_dead

    def forward(self, x: torch.Tensor, n_codebooks: int | None = None) -> RVQOutput:
        """x [B, T, D] -> RVQOutput. `n_codebooks` < K uses only a prefix (quantizer dropout)."""
        b, t, d = x.shape
        k_used = n_codebooks or self.n_codebooks
        flat = x.reshape(-1, d).float()
        if self.training and not bool(self.initialized):
            r = flat.detach()
            for k in range(self.n_codebooks):
                self._init_stage(k, r)
                r = r - self.codebooks[k][self.nearest(r, k)]
            self.initialized.fill_(True)
        residual = flat
        quant = torch.zeros_like(flat)
        codes, commit, cb_loss, ppl, usage = [], flat.new_zeros(()), flat.new_zeros(()), [], []
        for k in range(self.n_codebooks):
            if k >= k_used:
                codes.append(torch.zeros(flat.shape[0], dtype=torch.long, device=x.device))
                ppl.append(flat.new_zeros(()))
                usage.append(flat.new_zeros(()))
                continue
            idx = self.nearest(residual.detach(), k)
            q = self.codebooks[k][idx]
            if self.training and self.ema:
                self._ema_update(k, residual.detach(), idx)
            commit = commit + F.mse_loss(residual, q.detach())
            if not self.ema:
                cb_loss = cb_loss + F.mse_loss(q, residual.detach())
            quant = quant + q
            residual = residual - q.detach()
            counts = torch.bincount(idx, minlength=self.codebook_size).float()
            p = counts / counts.sum().clamp(min=1)
            ppl.append(torch.exp(-(p * (p + 1e-10).log()).sum()))
            usage.append((counts > 0).float().mean())
            codes.append(idx)
        quant = quant.view(b, t, d).to(x.dtype)
        st = x + (quant - x).detach()  # straight-through
        return RVQOutput(quantized=st, codes=torch.stack(codes, 0).view(self.n_codebooks, b, t).permute(1, 0, 2),
                         commit_loss=commit, codebook_loss=cb_loss, perplexity=torch.stack(ppl),
                         usage=torch.stack(usage))

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K', T] (K' <= K, a prefix) -> [B, T, D] sum of codewords."""
        out = 0
        for k in range(codes.shape[1]):
            out = out + F.embedding(codes[:, k], self.codebooks[k])
        return out

    def decode_soft(self, probs: torch.Tensor) -> torch.Tensor:
        """probs [B, K', T, N] (a distribution over each codebook's entries, K' <= K a prefix) -> [B, T, D]:
        sum_k sum_c p_k(c) codebook_k[c], the expected sum of codewords. It is linear, so it is the
        minimum-squared-error latent under per-codebook marginals however the codebooks depend on each
        other; one-hot probs give `decode` of those codes."""
        if probs.dim() != 4 or probs.shape[1] > self.n_codebooks or probs.shape[-1] != self.codebook_size:
            raise ValueError(f"expected probs [B, <= {self.n_codebooks}, T, {self.codebook_size}], "
                             f"got {tuple(probs.shape)}")
        k = probs.shape[1]
        return torch.einsum("bktn,knd->btd", probs.to(self.codebooks.dtype), self.codebooks[:k])

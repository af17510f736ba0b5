"""Transformer blocks shared by every model: RMSNorm, RoPE, grouped-query attention on SDPA with an
explicit KV cache, SwiGLU, pre-norm block, and a block stack.

Layout: hidden [B, T, D]; attention heads [B, H, T, Dh]. The KV cache is preallocated to a fixed
`max_len` so a decode step has static shapes (what torch.compile / CUDA graphs need); positions are
an explicit offset, never hidden state inside the modules.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from codectts.errors import ConfigError, GenerationError


@dataclass
class TransformerConfig:
    dim: int = 256
    n_layers: int = 4
    n_heads: int = 4
    n_kv_heads: int = 4
    ffn_dim: int = 1024
    max_seq_len: int = 4096
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5
    dropout: float = 0.0
    causal: bool = True

    def __post_init__(self):
        if self.dim % self.n_heads:
            raise ConfigError(f"dim {self.dim} not divisible by n_heads {self.n_heads}")
        if self.n_heads % self.n_kv_heads:
            raise ConfigError(f"n_heads {self.n_heads} not divisible by n_kv_heads {self.n_kv_heads}")
        if self.head_dim % 2:
            raise ConfigError(f"head_dim {self.head_dim} must be even for RoPE")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps)).type_as(x) * self.weight


def rope_tables(head_dim: int, max_len: int, theta: float = 10_000.0) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin tables [max_len, head_dim // 2]."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))
    ang = torch.outer(torch.arange(max_len, dtype=torch.float32), inv)
    return ang.cos(), ang.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate pairs (x[..., 2i], x[..., 2i+1]); x [B, H, T, Dh], cos/sin [T, Dh/2] already offset."""
    x1, x2 = x.float()[..., 0::2], x.float()[..., 1::2]
    out = torch.stack((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)
    return out.flatten(-2).type_as(x)


class KVCache:
    """Preallocated keys/values for one layer: [B, H_kv, max_len, Dh]; `length` is the filled prefix."""

    def __init__(self, batch: int, n_kv_heads: int, max_len: int, head_dim: int, device=None, dtype=torch.float32,
                 window: int | None = None):
        self.k = torch.zeros(batch, n_kv_heads, max_len, head_dim, device=device, dtype=dtype)
        self.v = torch.zeros_like(self.k)
        self.length = 0
        # decoding steps attend to the last `window` positions only: keeps relative distances within
        # what a model trained on short utterances has seen (RoPE makes only distances matter)
        self.window = window

    @property
    def max_len(self) -> int:
        return self.k.shape[2]

    def reset(self) -> None:
        self.length = 0

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = k.shape[2]
        if self.length + t > self.max_len:
            raise GenerationError(f"KV cache full: {self.length} + {t} > {self.max_len}")
        self.k[:, :, self.length:self.length + t] = k
        self.v[:, :, self.length:self.length + t] = v
        self.length += t
        a = max(0, self.length - self.window) if self.window and t == 1 else 0
        return self.k[:, :, a:self.length], self.v[:, :, a:self.length]


def make_caches(cfg: TransformerConfig, batch: int, max_len: int | None = None, device=None,
                dtype=torch.float32, window: int | None = None) -> list[KVCache]:
    return [KVCache(batch, cfg.n_kv_heads, max_len or cfg.max_seq_len, cfg.head_dim, device, dtype, window)
            for _ in range(cfg.n_layers)]


def band_mask(lengths: torch.Tensor, max_len: int, window: int | None) -> torch.Tensor:
    """Bidirectional attention mask [B, 1, T, T] over real positions, limited to |i - j| <= window."""
    real = padding_mask(lengths, max_len)
    mask = real[:, None, None, :] & real[:, None, :, None]
    if window:
        i = torch.arange(max_len, device=lengths.device)
        mask = mask & ((i[:, None] - i[None, :]).abs() <= window)
    return mask | ~real[:, None, :, None]  # padded queries attend anywhere (their output is never used)


class Attention(nn.Module):
    """Grouped-query attention: n_heads query heads share n_kv_heads key/value heads (SDPA enable_gqa)."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        hd = cfg.head_dim
        self.wq = nn.Linear(cfg.dim, cfg.n_heads * hd, bias=False)
        self.wk = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=False)
        self.wv = nn.Linear(cfg.dim, cfg.n_kv_heads * hd, bias=False)
        self.wo = nn.Linear(cfg.n_heads * hd, cfg.dim, bias=False)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        b, t, _ = x.shape
        hd = self.cfg.head_dim
        q = self.wq(x).view(b, t, self.cfg.n_heads, hd).transpose(1, 2)  # [B, H, T, Dh]
        k = self.wk(x).view(b, t, self.cfg.n_kv_heads, hd).transpose(1, 2)
        v = self.wv(x).view(b, t, self.cfg.n_kv_heads, hd).transpose(1, 2)
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        start = 0
        if cache is not None:
            start = cache.length
            k, v = cache.append(k, v)
        if mask is None and self.cfg.causal and t > 1:
            if start == 0:
                out = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True,
                                                     dropout_p=self.cfg.dropout if self.training else 0.0)
                return self.wo(out.transpose(1, 2).reshape(b, t, -1))
            # chunked prefill after a filled cache: query i sees keys <= start + i
            queries = start + torch.arange(t, device=x.device)
            mask = torch.arange(k.shape[2], device=x.device)[None, :] <= queries[:, None]
        out = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, enable_gqa=True, dropout_p=self.cfg.dropout if self.training else 0.0
        )
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))


class SwiGLU(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.w1 = nn.Linear(dim, hidden, bias=False)
        self.w3 = nn.Linear(dim, hidden, bias=False)
        self.w2 = nn.Linear(hidden, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.w2(F.silu(self.w1(x)) * self.w3(x))


class Block(nn.Module):
    """Pre-norm: x + attn(norm(x)), then x + ffn(norm(x))."""

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = SwiGLU(cfg.dim, cfg.ffn_dim)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x, cos, sin, mask=None, cache=None):
        x = x + self.drop(self.attn(self.attn_norm(x), cos, sin, mask, cache))
        return x + self.drop(self.ffn(self.ffn_norm(x)))


class Transformer(nn.Module):
    """A stack of blocks with a final norm. `forward(x [B,T,D], start=0, caches=None, mask=None)`.

    `mask` (bool [B, 1, T, S] or broadcastable; True = may attend) is for padding in bidirectional
    use; causal stacks need none for right-padded batches.
    """

    def __init__(self, cfg: TransformerConfig):
        super().__init__()
        self.cfg = cfg
        self.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.dim, cfg.norm_eps)
        cos, sin = rope_tables(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)
        self.apply(self._init)
        for layer in self.layers:  # scaled init of residual projections (GPT-2 / nanoGPT)
            std = 0.02 / (2 * cfg.n_layers) ** 0.5
            nn.init.normal_(layer.attn.wo.weight, std=std)
            nn.init.normal_(layer.ffn.w2.weight, std=std)

    @staticmethod
    def _init(m: nn.Module) -> None:
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Embedding):
            nn.init.normal_(m.weight, std=0.02)

    def forward(
        self, x: torch.Tensor, start: int = 0, caches: list[KVCache] | None = None, mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        t = x.shape[1]
        if start + t > self.cfg.max_seq_len:
            raise GenerationError(f"sequence of {start + t} exceeds max_seq_len {self.cfg.max_seq_len}")
        cos, sin = self.cos[start : start + t], self.sin[start : start + t]
        for i, layer in enumerate(self.layers):
            x = layer(x, cos, sin, mask, caches[i] if caches is not None else None)
        return self.norm(x)


def padding_mask(lengths: torch.Tensor, max_len: int) -> torch.Tensor:
    """[B, T] True for real positions."""
    return torch.arange(max_len, device=lengths.device)[None, :] < lengths[:, None]


def count_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())

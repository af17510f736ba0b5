"""TTS TRM (seed 003): a non-autoregressive Tiny Recursive Model from text + speaker to codec codes.

    text ids [B, S] --Embedding--> bidirectional Transformer (padding-masked) --> text ctx [B, S, Dt]
    speaker [B] --Embedding--> Linear --> added to every text position
      (or, with speaker_vector_dim > 0, a speaker vector [B, V] (a d-vector of a clip of the speaker) --> Linear:
       a voice the model never saw is cloned from its vector)
    y, z = learned init vectors, broadcast to [B, F, D]            (y = answer, z = latent)
    for h in H_cycles:
        for l in L_cycles:
            for block in RecursiveBlocks (L_layers):
                z += SelfAttn(z); z += CrossAttn(z, text); z += CrossAttn(z, y); z += FFN(z)
        y = AnswerUpdater(y, z)
    logits[:, k] = head_k(norm(y) + codebook_embed(k))              -> [B, K, F, N]

Positions. The init vectors are the same at every frame, so something must tell frames apart.
Each frame gets an *aligned position*: the text position it belongs to, from teacher/predicted
durations (`frame_positions`, `positions_from_durations`) or, by default, a uniform reading rate,
(t + 0.5) * S_b / F_b - 0.5 for item b's own text and frame lengths. z starts as init_z + a
sinusoid of that position (+ the text context at it when `regulate`, FastSpeech's length
regulator); without a per-frame signal, identical frames stay identical under attention at init
and a one-item overfit stalls (measured: tests/test_trm.py). All attention uses rotary positions:
self-attention and z->y by frame index; z->text rotates queries by the aligned position and keys
by the text index, so a score depends on how far a token is from where the frame reads. This is
our choice; the seed adds sinusoidal positions to the text only and leaves the audio side open.

Padding. Batches are right-padded in text and frames. Padded keys are masked out of every
attention and padded frames out of the loss, so a valid frame's output does not depend on what
else is in the batch. (The seed's loss uses `ignore_index=0`, which silently drops every real
code 0 from training; we use a mask instead.)

Loss: cross-entropy per codebook, averaged over valid frames, weighted by `codebook_weights`
(2.0 for codebook 0, 1.5 - 0.5 i / 7 for i = 1..7, 1.0 after, normalised to mean 1), then averaged.
Optionally (`latent_error`, our addition) the squared error between the expected codec latent under the
predicted distributions and the true codes' latent, which is what soft decoding plays.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from codectts.errors import ConfigError, TextError
from codectts.models.blocks import (
    Attention,
    RMSNorm,
    SwiGLU,
    Transformer,
    TransformerConfig,
    apply_rope,
    padding_mask,
    rope_tables,
)
from codectts.parts import PartConfig, PartModel, make_preset

SEMANTIC_WEIGHT = 2.0  # codebook 0
EARLY_WEIGHT_START, EARLY_WEIGHT_SPAN, N_EARLY = 1.5, 0.5, 7  # codebooks 1..7: 1.5 - 0.5 * i / 7
INIT_STD = 0.02
ALIGNMENTS = ("uniform", "durations")


@dataclass
class TRMConfig(PartConfig):
    """One config for the whole model. Data-dependent sizes (vocab, speakers, K, N) come from the corpus."""

    vocab_size: int = 64
    n_speakers: int = 1
    n_codebooks: int = 32
    codebook_size: int = 2048
    text_dim: int = 256  # seed --text-embed-dim
    text_layers: int = 4
    n_heads: int = 8
    dim: int = 256  # seed --audio-embed-dim: width of y, z and the recursive blocks
    ffn_dim: int = 512  # seed --hidden-dim: FFN hidden size (text encoder, blocks, answer updater)
    L_layers: int = 2  # RecursiveBlocks per low-level cycle
    H_cycles: int = 3
    L_cycles: int = 6
    speaker_dim: int = 64
    speaker_vector_dim: int = 0  # > 0: condition on speaker vectors of this size instead of a speaker-id table
    codebook_dim: int = 64
    share_output_heads: bool = False
    max_text_len: int = 512
    max_frames: int = 256  # longest output the model accepts (seed --max-audio-frames)
    grad_cycles: int = 0  # back-propagate through the last N H-cycles only (TRM paper: 1); 0 = all (seed)
    regulate: bool = True  # z starts with the text context at each frame's aligned position (length regulation)
    alignment: str = "uniform"  # what training placed frames on the text axis with: "uniform" | "durations"
    dropout: float = 0.0
    rope_theta: float = 10_000.0
    norm_eps: float = 1e-5

    def __post_init__(self):
        for name in ("vocab_size", "n_speakers", "n_codebooks", "codebook_size", "text_dim", "text_layers",
                     "n_heads", "dim", "ffn_dim", "L_layers", "H_cycles", "L_cycles", "speaker_dim",
                     "codebook_dim", "max_text_len", "max_frames"):
            if getattr(self, name) < 1:
                raise ConfigError(f"TRMConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("text_dim", "dim"):
            if getattr(self, name) % self.n_heads or (getattr(self, name) // self.n_heads) % 2:
                raise ConfigError(f"TRMConfig.{name}={getattr(self, name)} must split into {self.n_heads} "
                                  "heads of even size (rotary positions)")
        if self.speaker_vector_dim < 0:
            raise ConfigError(f"TRMConfig.speaker_vector_dim must be >= 0, got {self.speaker_vector_dim}")
        if self.alignment not in ALIGNMENTS:
            raise ConfigError(f"TRMConfig.alignment must be one of {ALIGNMENTS}, got {self.alignment!r}")
        if not 0 <= self.grad_cycles <= self.H_cycles:
            raise ConfigError(f"grad_cycles must be in [0, H_cycles={self.H_cycles}], got {self.grad_cycles}")

    @property
    def head_dim(self) -> int:
        return self.dim // self.n_heads

    @property
    def n_block_calls(self) -> int:
        """RecursiveBlock applications per forward pass (the effective depth)."""
        return self.H_cycles * self.L_cycles * self.L_layers

    def text_transformer(self) -> TransformerConfig:
        return TransformerConfig(dim=self.text_dim, n_layers=self.text_layers, n_heads=self.n_heads,
                                 n_kv_heads=self.n_heads, ffn_dim=self.ffn_dim, max_seq_len=self.max_text_len,
                                 rope_theta=self.rope_theta, norm_eps=self.norm_eps, dropout=self.dropout,
                                 causal=False)

    def audio_attention(self) -> TransformerConfig:
        return TransformerConfig(dim=self.dim, n_layers=self.L_layers, n_heads=self.n_heads, n_kv_heads=self.n_heads,
                                 ffn_dim=self.ffn_dim, max_seq_len=self.max_frames, rope_theta=self.rope_theta,
                                 norm_eps=self.norm_eps, dropout=self.dropout, causal=False)


# Architecture presets; data-dependent sizes are filled in by `preset(name, **data_sizes)`.
PRESETS: dict[str, dict] = {
    # tests: a forward + backward in milliseconds
    "tiny": dict(text_dim=32, text_layers=1, n_heads=2, dim=32, ffn_dim=64, L_layers=1, H_cycles=2, L_cycles=2,
                 speaker_dim=8, codebook_dim=8, max_text_len=256, max_frames=512),
    # CPU experiments on a few hours of speech
    "small": dict(text_dim=128, text_layers=3, n_heads=4, dim=128, ffn_dim=384, L_layers=2, H_cycles=2,
                  L_cycles=2, speaker_dim=32, codebook_dim=32, max_text_len=400, max_frames=1024, grad_cycles=1),
    # the seed's defaults (Mimi: 32 x 2048 at 12.5 Hz, 256 frames = 20 s)
    "seed": dict(text_dim=256, text_layers=4, n_heads=8, dim=256, ffn_dim=512, L_layers=2, H_cycles=3, L_cycles=6,
                 speaker_dim=64, codebook_dim=64, max_text_len=512, max_frames=256, n_codebooks=32,
                 codebook_size=2048),
}


def preset(name: str, **overrides) -> TRMConfig:
    return make_preset(TRMConfig, PRESETS, name, overrides)


def codebook_weights(n_codebooks: int) -> torch.Tensor:
    """The seed's per-codebook loss weights for K codebooks, normalised to mean 1."""
    w = torch.ones(n_codebooks)
    w[0] = SEMANTIC_WEIGHT
    for i in range(1, min(N_EARLY, n_codebooks - 1) + 1):
        w[i] = EARLY_WEIGHT_START - EARLY_WEIGHT_SPAN * i / N_EARLY
    return w / w.mean()


def uniform_positions(text_lengths: torch.Tensor, frame_lengths: torch.Tensor, n_frames: int) -> torch.Tensor:
    """[B, F]: frame t of item b faces text position (t + 0.5) * S_b / F_b - 0.5 (a uniform reading rate)."""
    t = torch.arange(n_frames, device=text_lengths.device, dtype=torch.float32)
    return (t[None, :] + 0.5) * (text_lengths.float() / frame_lengths.float())[:, None] - 0.5


def positions_from_durations(durations) -> torch.Tensor:
    """Per-token frame counts [S] -> [sum(durations)] text positions: token i's d_i frames get
    i + (j + 0.5) / d_i - 0.5, j = 0..d_i-1 (spread across the token, centred on it). Tokens of
    0 frames get none."""
    d = torch.as_tensor(durations, dtype=torch.long).flatten()
    if d.numel() == 0 or int(d.min()) < 0 or int(d.sum()) < 1:
        raise ConfigError(f"durations must be >= 0 with a positive sum, got {d.tolist()[:20]}")
    tok = torch.repeat_interleave(torch.arange(d.numel()), d)  # [F] token of each frame
    start = torch.cumsum(d, 0) - d  # first frame of each token
    j = torch.arange(int(d.sum())) - start[tok]
    return tok.float() + (j.float() + 0.5) / d[tok].float() - 0.5


def sinusoid(positions: torch.Tensor, dim: int, theta: float = 10_000.0) -> torch.Tensor:
    """Fixed sin/cos features [B, T, dim] of real-valued positions [B, T] (Transformer-paper encoding)."""
    inv = 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=positions.device) / dim))
    ang = positions.float()[..., None] * inv  # [B, T, dim/2]
    return torch.stack((ang.sin(), ang.cos()), dim=-1).flatten(-2)


def rope_at(positions: torch.Tensor, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [B, 1, T, head_dim // 2] for real-valued positions [B, T] (rotary angles = pos x freq)."""
    inv = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32, device=positions.device) / head_dim))
    ang = positions.float()[..., None] * inv  # [B, T, Dh/2]
    return ang.cos()[:, None], ang.sin()[:, None]


class CrossAttention(Attention):
    """Queries from x [B, T, D], keys/values from ctx [B, S, D]; rotary positions given per side.
    The projections are blocks.Attention's (same names, so parts stay loadable); only the forward differs."""

    def forward(self, x: torch.Tensor, ctx: torch.Tensor, q_rope: tuple[torch.Tensor, torch.Tensor],
                k_rope: tuple[torch.Tensor, torch.Tensor], mask: torch.Tensor | None) -> torch.Tensor:
        b, t, _ = x.shape
        s, hd = ctx.shape[1], self.cfg.head_dim
        q = self.wq(x).view(b, t, self.cfg.n_heads, hd).transpose(1, 2)  # [B, H, T, Dh]
        k = self.wk(ctx).view(b, s, self.cfg.n_kv_heads, hd).transpose(1, 2)  # [B, Hkv, S, Dh]
        v = self.wv(ctx).view(b, s, self.cfg.n_kv_heads, hd).transpose(1, 2)
        q, k = apply_rope(q, *q_rope), apply_rope(k, *k_rope)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, enable_gqa=True,
                                             dropout_p=self.cfg.dropout if self.training else 0.0)
        return self.wo(out.transpose(1, 2).reshape(b, t, -1))


@dataclass
class _Context:
    """Everything a RecursiveBlock needs besides z and y; built once per forward pass."""

    text: torch.Tensor  # [B, S, D]
    text_mask: torch.Tensor  # [B, 1, 1, S] True = attend
    frame_mask: torch.Tensor  # [B, 1, 1, F]
    frame_rope: tuple[torch.Tensor, torch.Tensor]  # [F, Dh/2] each
    aligned: torch.Tensor  # [B, F]: the text position each frame faces under a uniform reading rate
    aligned_rope: tuple[torch.Tensor, torch.Tensor]  # [B, 1, F, Dh/2]: rotary angles of `aligned`
    text_rope: tuple[torch.Tensor, torch.Tensor]  # [S, Dh/2]


class RecursiveBlock(nn.Module):
    """Pre-norm: z += SelfAttn(z); z += CrossAttn(z, text); z += CrossAttn(z, y); z += FFN(z)."""

    def __init__(self, cfg: TRMConfig):
        super().__init__()
        acfg = cfg.audio_attention()
        self.self_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.self_attn = Attention(acfg)
        self.text_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.text_attn = CrossAttention(acfg)
        self.answer_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.answer_kv_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.answer_attn = CrossAttention(acfg)
        self.ffn_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.ffn = SwiGLU(cfg.dim, cfg.ffn_dim)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, z: torch.Tensor, y: torch.Tensor, c: _Context) -> torch.Tensor:
        z = z + self.drop(self.self_attn(self.self_norm(z), *c.frame_rope, mask=c.frame_mask))
        z = z + self.drop(self.text_attn(self.text_norm(z), c.text, c.aligned_rope, c.text_rope, c.text_mask))
        z = z + self.drop(self.answer_attn(self.answer_norm(z), self.answer_kv_norm(y), c.frame_rope, c.frame_rope,
                                           c.frame_mask))
        return z + self.drop(self.ffn(self.ffn_norm(z)))


class AnswerUpdater(nn.Module):
    """y <- y + SwiGLU([norm(y); norm(z)]): the answer reads the latent once per high-level cycle."""

    def __init__(self, cfg: TRMConfig):
        super().__init__()
        self.y_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.z_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.w1 = nn.Linear(2 * cfg.dim, cfg.ffn_dim, bias=False)  # gate
        self.w3 = nn.Linear(2 * cfg.dim, cfg.ffn_dim, bias=False)  # value
        self.w2 = nn.Linear(cfg.ffn_dim, cfg.dim, bias=False)  # hidden -> D

    def forward(self, y: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        yz = torch.cat([self.y_norm(y), self.z_norm(z)], dim=-1)  # [B, F, 2D]
        return y + self.w2(F.silu(self.w1(yz)) * self.w3(yz))


@dataclass
class TRMOutput:
    logits: torch.Tensor  # [B, K, F, N]
    loss: torch.Tensor | None = None  # weighted mean of codebook_loss
    codebook_loss: torch.Tensor | None = None  # [K] CE per codebook over valid frames
    codebook_accuracy: torch.Tensor | None = None  # [K] argmax accuracy over valid frames


class TTSTRM(PartModel, nn.Module):
    """`forward(text_ids, text_lengths, speaker, frame_lengths, targets=None) -> TRMOutput`."""

    model_type = "tts_trm"
    config_class = TRMConfig

    def __init__(self, cfg: TRMConfig):
        super().__init__()
        self.cfg = cfg
        self.text_embed = nn.Embedding(cfg.vocab_size, cfg.text_dim)
        self.text_encoder = Transformer(cfg.text_transformer())
        if cfg.speaker_vector_dim:  # no id table: the model must read the voice from the vector alone
            self.speaker_vector_proj = nn.Linear(cfg.speaker_vector_dim, cfg.text_dim, bias=False)
            speaker_modules = [self.speaker_vector_proj]
        else:
            self.speaker_embed = nn.Embedding(cfg.n_speakers, cfg.speaker_dim)
            self.speaker_proj = nn.Linear(cfg.speaker_dim, cfg.text_dim, bias=False)
            speaker_modules = [self.speaker_embed, self.speaker_proj]
        self.text_to_audio = nn.Linear(cfg.text_dim, cfg.dim, bias=False) if cfg.text_dim != cfg.dim else nn.Identity()
        self.init_y = nn.Parameter(torch.randn(cfg.dim))
        self.init_z = nn.Parameter(torch.randn(cfg.dim))
        self.blocks = nn.ModuleList(RecursiveBlock(cfg) for _ in range(cfg.L_layers))
        self.answer = AnswerUpdater(cfg)
        self.out_norm = RMSNorm(cfg.dim, cfg.norm_eps)
        self.codebook_embed = nn.Embedding(cfg.n_codebooks, cfg.codebook_dim)
        self.codebook_proj = nn.Linear(cfg.codebook_dim, cfg.dim, bias=False)
        n_heads_out = 1 if cfg.share_output_heads else cfg.n_codebooks
        self.out_weight = nn.Parameter(torch.empty(n_heads_out, cfg.codebook_size, cfg.dim))  # [K|1, N, D]
        self.register_buffer("loss_weights", codebook_weights(cfg.n_codebooks), persistent=False)
        self._init_weights(speaker_modules)

    def _init_weights(self, speaker_modules: list[nn.Module]) -> None:
        """Normal(0.02) everywhere (the text encoder does its own); residual outputs of the recursive
        blocks scaled by the number of block applications, as nanoGPT scales by depth."""
        for m in [self.text_embed, *speaker_modules, self.text_to_audio, *self.blocks,
                  self.answer, self.codebook_embed, self.codebook_proj]:
            for sub in m.modules():
                if isinstance(sub, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(sub.weight, std=INIT_STD)
        std = INIT_STD / math.sqrt(2 * self.cfg.n_block_calls)
        for blk in self.blocks:
            for proj in (blk.self_attn.wo, blk.text_attn.wo, blk.answer_attn.wo, blk.ffn.w2):
                nn.init.normal_(proj.weight, std=std)
        nn.init.normal_(self.answer.w2.weight, std=INIT_STD / math.sqrt(2 * self.cfg.H_cycles))
        nn.init.normal_(self.out_weight, std=INIT_STD)

    @property
    def device(self) -> torch.device:
        return self.init_y.device

    def encode_text(self, text_ids: torch.Tensor, text_lengths: torch.Tensor, speaker: torch.Tensor,
                    speaker_vector: torch.Tensor | None = None) -> torch.Tensor:
        """[B, S] ids -> [B, S, D] text context with the speaker added (padded positions are junk, masked later).
        A model with `speaker_vector_dim` reads the speaker from `speaker_vector` [B, V] (unit-normalised here)."""
        s = text_ids.shape[1]
        if s > self.cfg.max_text_len:
            raise TextError(f"text of {s} tokens exceeds this model's max_text_len {self.cfg.max_text_len}")
        mask = padding_mask(text_lengths, s)[:, None, None, :]  # [B, 1, 1, S]
        h = self.text_encoder(self.text_embed(text_ids), mask=mask)
        if self.cfg.speaker_vector_dim:
            h = h + self.speaker_vector_proj(F.normalize(speaker_vector.float(), dim=-1).to(h.dtype))[:, None, :]
        else:
            h = h + self.speaker_proj(self.speaker_embed(speaker))[:, None, :]
        return self.text_to_audio(h)

    def _context(self, text: torch.Tensor, text_lengths: torch.Tensor, frame_lengths: torch.Tensor,
                 n_frames: int, aligned: torch.Tensor) -> _Context:
        cfg, dev = self.cfg, text.device
        s = text.shape[1]
        cos, sin = rope_tables(cfg.head_dim, max(n_frames, s), cfg.rope_theta)
        cos, sin = cos.to(dev), sin.to(dev)
        return _Context(text=text, text_mask=padding_mask(text_lengths, s)[:, None, None, :],
                        frame_mask=padding_mask(frame_lengths, n_frames)[:, None, None, :],
                        frame_rope=(cos[:n_frames], sin[:n_frames]), aligned=aligned,
                        aligned_rope=rope_at(aligned, cfg.head_dim, cfg.rope_theta),
                        text_rope=(cos[:s], sin[:s]))

    def refine(self, text: torch.Tensor, text_lengths: torch.Tensor, frame_lengths: torch.Tensor,
               n_frames: int, aligned: torch.Tensor) -> torch.Tensor:
        """The recursive core: H_cycles x (L_cycles x blocks, then the answer update) -> y [B, F, D]."""
        cfg = self.cfg
        c = self._context(text, text_lengths, frame_lengths, n_frames, aligned)
        b = text.shape[0]
        y = self.init_y.expand(b, n_frames, -1)
        z = self.init_z + sinusoid(c.aligned, cfg.dim, cfg.rope_theta)  # [B, F, D]
        if cfg.regulate:  # each frame starts from the text token it faces (FastSpeech's length regulator)
            idx = aligned.round().long().clamp(min=0).minimum(text_lengths[:, None] - 1)  # [B, F]
            z = z + text.gather(1, idx[..., None].expand(-1, -1, text.shape[-1]))
        n_free = cfg.H_cycles - cfg.grad_cycles if cfg.grad_cycles and self.training else 0
        for h in range(cfg.H_cycles):
            with torch.set_grad_enabled(torch.is_grad_enabled() and h >= n_free):
                for _ in range(cfg.L_cycles):
                    for blk in self.blocks:
                        z = blk(z, y, c)
                y = self.answer(y, z)
        return y

    def head(self, y: torch.Tensor) -> torch.Tensor:
        """y [B, F, D] -> logits [B, K, F, N]: each codebook sees y plus its own embedding."""
        cb = self.codebook_proj(self.codebook_embed.weight)  # [K, D]
        yk = self.out_norm(y)[:, None] + cb[None, :, None, :]  # [B, K, F, D]
        w = self.out_weight.expand(self.cfg.n_codebooks, -1, -1)  # [K, N, D] (shared: one view)
        return torch.einsum("bkfd,knd->bkfn", yk, w)

    def forward(self, text_ids: torch.Tensor, text_lengths: torch.Tensor, speaker: torch.Tensor,
                frame_lengths: torch.Tensor, targets: torch.Tensor | None = None,
                frame_positions: torch.Tensor | None = None, speaker_vector: torch.Tensor | None = None) -> TRMOutput:
        """`frame_positions` [B, F]: the text position each frame belongs to (e.g. from durations,
        `positions_from_durations`); None = a uniform reading rate. Values past an item's length are ignored.
        `speaker_vector` [B, V]: required by (and only by) a model with `speaker_vector_dim` V."""
        cfg = self.cfg
        if text_ids.dim() != 2 or text_lengths.shape != text_ids.shape[:1] or speaker.shape != text_ids.shape[:1]:
            raise ConfigError(f"expected text_ids [B, S], text_lengths [B], speaker [B]; got "
                              f"{tuple(text_ids.shape)}, {tuple(text_lengths.shape)}, {tuple(speaker.shape)}")
        if int(text_lengths.min()) < 1 or int(frame_lengths.min()) < 1:
            raise ConfigError("every item needs at least one text token and one frame")
        if int(speaker.min()) < 0 or int(speaker.max()) >= cfg.n_speakers:
            raise ConfigError(f"speaker id out of range [0, {cfg.n_speakers}): {speaker.tolist()}")
        if cfg.speaker_vector_dim and (speaker_vector is None
                                       or speaker_vector.shape != (text_ids.shape[0], cfg.speaker_vector_dim)):
            got = None if speaker_vector is None else tuple(speaker_vector.shape)
            raise ConfigError(f"this TRM reads the speaker from speaker_vector [B, {cfg.speaker_vector_dim}], "
                              f"got {got}")
        if not cfg.speaker_vector_dim and speaker_vector is not None:
            raise ConfigError("this TRM knows its speakers by id; it takes no speaker_vector")
        n_frames = int(frame_lengths.max()) if targets is None else targets.shape[-1]
        if n_frames > cfg.max_frames:
            raise ConfigError(f"{n_frames} frames asked for; this model handles at most max_frames={cfg.max_frames}")
        if targets is not None and (targets.shape != (text_ids.shape[0], cfg.n_codebooks, n_frames)
                                    or int(frame_lengths.max()) > n_frames):
            raise ConfigError(f"targets must be [B, {cfg.n_codebooks}, F >= max frame length], got "
                              f"{tuple(targets.shape)}")
        if frame_positions is None:
            frame_positions = uniform_positions(text_lengths, frame_lengths, n_frames)
        elif frame_positions.shape != (text_ids.shape[0], n_frames):
            raise ConfigError(f"frame_positions must be [B, {n_frames}], got {tuple(frame_positions.shape)}")
        text = self.encode_text(text_ids, text_lengths, speaker, speaker_vector)
        y = self.refine(text, text_lengths, frame_lengths, n_frames, frame_positions.float())
        logits = self.head(y)
        if targets is None:
            return TRMOutput(logits=logits)
        return self.loss(logits, targets, frame_lengths)

    @torch.no_grad()
    def predict(self, text_ids: torch.Tensor, text_lengths: torch.Tensor, speaker: torch.Tensor,
                frame_lengths: torch.Tensor, frame_positions: torch.Tensor | None = None,
                speaker_vector: torch.Tensor | None = None) -> torch.Tensor:
        """Inference: logits [B, K, F, N] from one pass through every refinement cycle. No gradient, and
        dropout off whatever mode the module is in (a training loop samples mid-run), the mode kept."""
        was_training = self.training
        self.eval()
        try:
            return self(text_ids, text_lengths, speaker, frame_lengths, frame_positions=frame_positions,
                        speaker_vector=speaker_vector).logits
        finally:
            self.train(was_training)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor, frame_lengths: torch.Tensor) -> TRMOutput:
        """Weighted CE over valid frames only (a padding mask, not ignore_index=0: code 0 is a real code)."""
        b, k, f, n = logits.shape
        valid = padding_mask(frame_lengths, f)[:, None, :].expand(b, k, f).float()  # [B, K, F]
        ce = F.cross_entropy(logits.reshape(-1, n).float(), targets.reshape(-1), reduction="none").view(b, k, f)
        n_valid = valid[:, 0].sum()
        per_cb = (ce * valid).sum(dim=(0, 2)) / n_valid  # [K]
        with torch.no_grad():
            acc = ((logits.argmax(-1) == targets).float() * valid).sum(dim=(0, 2)) / n_valid
        return TRMOutput(logits=logits, loss=(per_cb * self.loss_weights).mean(), codebook_loss=per_cb,
                         codebook_accuracy=acc)


def latent_error(logits: torch.Tensor, targets: torch.Tensor, frame_lengths: torch.Tensor, rvq) -> torch.Tensor:
    """Mean squared error per valid frame between the expected latent sum_k sum_c p_k(c) codebook_k[c]
    (`rvq.decode_soft`: what a soft-decoding voice decodes) and the latent of the true codes (`rvq.decode`);
    `rvq` a mel RVQ codec's `ResidualVQ` (frozen, on the logits' device). Cross-entropy rewards the right
    code and nothing else, while codes are many-to-one on sound: near codewords sound alike. This loss
    gives credit for mass on near codewords, a regression signal like FastSpeech's mel loss, which a
    non-autoregressive model learns from much faster."""
    b, k, f, n = logits.shape
    if (rvq.n_codebooks, rvq.codebook_size) != (k, n):
        raise ConfigError(f"a {rvq.n_codebooks} x {rvq.codebook_size} quantizer does not fit logits of {k} x {n}")
    err = (rvq.decode_soft(logits.float().softmax(-1)) - rvq.decode(targets)).pow(2).mean(-1)  # [B, F]
    valid = padding_mask(frame_lengths, f).float()
    return (err * valid).sum() / valid.sum()

"""The Talker (seeds 000, 001): an autoregressive transformer over multi-codebook audio frames.

Each input frame is the sum of one embedding per codebook; one linear head per codebook predicts
the next frame; teacher-forced cross-entropy on all heads. Three ways to condition on text:

- "none":    the seed's unconditional model (BOS frame [0, 0], fixed length): not TTS, kept as the seed.
- "prefix":  text tokens enter the same causal sequence before the audio (their own embedding);
             loss on audio positions only; an EOS code ends the utterance.
- "aligned": each frame is told which phoneme it belongs to (teacher durations at training, a
             duration model at inference): phoneme encodings from a small bidirectional encoder
             are length-regulated to frames and added to each frame's input, so no alignment has
             to be learned and the length is known in advance (no EOS needed).

`depth_heads` makes codebook k's head also see the codes < k already chosen for the same frame
(cheap embedding sums, sampled in order at inference) so codebooks within a frame agree.

Inference goes through `prefill` / `step` on explicit KV caches and `codebook_logits` (the same head
code as training); the sampling loops live in `codectts.infer.talker.TalkerGenerator`.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from codectts.errors import ConfigError, DataError
from codectts.models.blocks import KVCache, Transformer, TransformerConfig, band_mask, make_caches, padding_mask
from codectts.parts import PartConfig, PartModel, make_preset

CONDITIONING = ("none", "prefix", "aligned")
MAX_IN_PHONEME = 15  # frame position inside its phoneme is embedded up to this offset


@dataclass
class TalkerConfig(PartConfig):
    dim: int = 192
    n_layers: int = 4
    n_heads: int = 3
    n_kv_heads: int = 1
    ffn_dim: int = 768
    n_codebooks: int = 2
    codebook_size: int = 128
    conditioning: str = "none"
    text_vocab: int = 0
    text_layers: int = 0  # aligned mode: bidirectional phoneme encoder depth
    n_speakers: int = 0
    depth_heads: bool = False
    max_seq_len: int = 2048
    dropout: float = 0.0
    prev_frame_dropout: float = 0.0  # aligned mode: hide the previous frame's codes sometimes (rely on text)

    def __post_init__(self):
        if self.conditioning not in CONDITIONING:
            raise ConfigError(f"conditioning must be one of {CONDITIONING}, got {self.conditioning!r}")
        if self.conditioning != "none" and self.text_vocab <= 0:
            raise ConfigError(f"{self.conditioning} conditioning needs text_vocab > 0")
        if self.conditioning == "aligned" and self.text_layers <= 0:
            raise ConfigError("aligned conditioning needs text_layers >= 1")

    @property
    def special_codes(self) -> int:
        """Extra input ids per codebook: BOS (and EOS for prefix mode). The seed uses code 0 as BOS."""
        return 0 if self.conditioning == "none" else 2

    @property
    def bos_code(self) -> int:
        return 0 if self.conditioning == "none" else self.codebook_size

    @property
    def eos_code(self) -> int:
        return self.codebook_size + 1  # prefix mode only

    @property
    def n_classes(self) -> int:
        """Output classes per head: codes, plus EOS in prefix mode."""
        return self.codebook_size + (1 if self.conditioning == "prefix" else 0)

    def transformer(self, causal: bool = True, n_layers: int | None = None) -> TransformerConfig:
        return TransformerConfig(dim=self.dim, n_layers=n_layers or self.n_layers, n_heads=self.n_heads,
                                 n_kv_heads=self.n_kv_heads, ffn_dim=self.ffn_dim, max_seq_len=self.max_seq_len,
                                 dropout=self.dropout, causal=causal)


PRESETS: dict[str, dict] = {
    # Seed 001 exactly: d 192, 4 layers, 3 query heads / 1 kv head, FFN 768, 2 x 128 codes, unconditional.
    "seed": {},
    # tests: milliseconds per step
    "tiny": dict(dim=32, n_layers=2, n_heads=2, n_kv_heads=1, ffn_dim=64, n_codebooks=2, codebook_size=16,
                 conditioning="aligned", text_vocab=151, text_layers=1, depth_heads=True, max_seq_len=512),
    # the shipped voice joe: aligned, d 256 x 6, GQA 4/2, 3 text layers, depth heads, 4 x 512 codes (8.6 M)
    "joe": dict(dim=256, n_layers=6, n_heads=4, n_kv_heads=2, ffn_dim=768, n_codebooks=4, codebook_size=512,
                conditioning="aligned", text_vocab=151, text_layers=3, depth_heads=True, max_seq_len=4096,
                dropout=0.1, prev_frame_dropout=0.1),
}


def preset(name: str, **overrides) -> TalkerConfig:
    """A named TalkerConfig with `overrides` applied (unknown names and fields are ConfigErrors)."""
    return make_preset(TalkerConfig, PRESETS, name, overrides)


@dataclass
class TalkerOutput:
    logits: list[torch.Tensor]  # per codebook [B, T, n_classes]
    loss: torch.Tensor | None = None
    losses: torch.Tensor | None = None  # [K] per-head cross-entropy


def length_regulate(enc: torch.Tensor, durations: torch.Tensor, n_frames: int | None = None):
    """Repeat phoneme encodings by their durations.

    enc [B, P, D], durations [B, P] (int) -> (frames [B, F, D], phoneme index [B, F], offset in phoneme
    [B, F], frames left in phoneme [B, F], frame mask [B, F]); F = max total unless given.
    """
    b, p, d = enc.shape
    totals = durations.sum(1)
    f = int(n_frames if n_frames is not None else totals.max().clamp(min=1))
    ends = durations.cumsum(1)  # [B, P]
    t = torch.arange(f, device=enc.device)
    idx = torch.searchsorted(ends, t.expand(b, f).contiguous(), right=True).clamp(max=p - 1)  # [B, F]
    starts = ends - durations
    offset = t[None] - starts.gather(1, idx)
    left = ends.gather(1, idx) - 1 - t[None]
    frames = enc.gather(1, idx.unsqueeze(-1).expand(b, f, d))
    mask = t[None] < totals[:, None]
    return frames, idx, offset.clamp(0, MAX_IN_PHONEME), left.clamp(0, MAX_IN_PHONEME), mask


class Talker(PartModel, nn.Module):
    model_type = "talker"
    config_class = TalkerConfig

    def __init__(self, cfg: TalkerConfig):
        super().__init__()
        self.cfg = cfg
        k, n_in = cfg.n_codebooks, cfg.codebook_size + cfg.special_codes
        self.code_emb = nn.ModuleList(nn.Embedding(n_in, cfg.dim) for _ in range(k))
        self.transformer = Transformer(cfg.transformer())
        self.heads = nn.ModuleList(nn.Linear(cfg.dim, cfg.n_classes, bias=False) for _ in range(k))
        if cfg.depth_heads:
            self.depth_emb = nn.ModuleList(nn.Embedding(cfg.n_classes, cfg.dim) for _ in range(k - 1))
        if cfg.conditioning != "none":
            self.text_emb = nn.Embedding(cfg.text_vocab, cfg.dim)
        if cfg.conditioning == "aligned":
            self.text_encoder = Transformer(cfg.transformer(causal=False, n_layers=cfg.text_layers))
            self.offset_emb = nn.Embedding(MAX_IN_PHONEME + 1, cfg.dim)
            self.left_emb = nn.Embedding(MAX_IN_PHONEME + 1, cfg.dim)
        if cfg.n_speakers > 0:
            self.speaker_emb = nn.Embedding(cfg.n_speakers, cfg.dim)
        for m in self.modules():
            if isinstance(m, nn.Embedding):
                nn.init.normal_(m.weight, std=0.02)
        for h in self.heads:
            nn.init.normal_(h.weight, std=0.02)

    # ---- pieces -------------------------------------------------------------------------------
    def embed_frames(self, codes: torch.Tensor) -> torch.Tensor:
        """codes [B, K, T] -> [B, T, D] (sum over codebooks)."""
        return sum(self.code_emb[k](codes[:, k]) for k in range(self.cfg.n_codebooks))

    def encode_text(self, text: torch.Tensor, text_lengths: torch.Tensor, window: int | None = None) -> torch.Tensor:
        """Aligned mode: phoneme ids [B, P] -> contextual encodings [B, P, D] (bidirectional, padded;
        `window`: each phoneme sees only phonemes within that distance, for text longer than in training)."""
        if window:
            attn = band_mask(text_lengths, text.shape[1], window)
        else:
            attn = padding_mask(text_lengths, text.shape[1])[:, None, None, :]
        return self.text_encoder(self.text_emb(text), mask=attn)

    def frame_conditioning(self, text, text_lengths, durations, n_frames=None, speaker=None, text_window=None):
        enc = self.encode_text(text, text_lengths, text_window)
        frames, _, offset, left, mask = length_regulate(enc, durations, n_frames)
        cond = frames + self.offset_emb(offset) + self.left_emb(left)
        if speaker is not None and self.cfg.n_speakers > 0:
            cond = cond + self.speaker_emb(speaker)[:, None]
        return cond, mask

    def codebook_logits(self, h: torch.Tensor, k: int, prev: Sequence[torch.Tensor]) -> torch.Tensor:
        """Codebook k's logits from hidden states h [..., D]; with depth heads the head also sees the codes
        `prev[j]` [...] (j < k) chosen for the same frame(s). One code path for training and sampling."""
        x = h
        if self.cfg.depth_heads and k > 0:
            x = h + sum(self.depth_emb[j](prev[j]) for j in range(k))
        return self.heads[k](x)

    def head_logits(self, h: torch.Tensor, codes: torch.Tensor) -> list[torch.Tensor]:
        """Per-codebook logits [B, T, n_classes] from hidden [B, T, D], teacher-forced on codes [B, K, T]."""
        prev = codes.unbind(1)
        return [self.codebook_logits(h, k, prev) for k in range(self.cfg.n_codebooks)]

    def bos(self, b: int, device) -> torch.Tensor:
        return torch.full((b, self.cfg.n_codebooks, 1), self.cfg.bos_code, dtype=torch.long, device=device)

    # ---- training forward ---------------------------------------------------------------------
    def forward(self, codes: torch.Tensor, frame_lengths: torch.Tensor | None = None, text: torch.Tensor | None = None,
                text_lengths: torch.Tensor | None = None, durations: torch.Tensor | None = None,
                speaker: torch.Tensor | None = None) -> TalkerOutput:
        """Teacher-forced pass. codes [B, K, F] (targets); returns logits for every frame and the loss."""
        cfg = self.cfg
        b, k, f = codes.shape
        if k != cfg.n_codebooks:
            raise DataError(f"expected {cfg.n_codebooks} codebooks, got {k}")
        if frame_lengths is None:
            frame_lengths = torch.full((b,), f, dtype=torch.long, device=codes.device)
        inputs = torch.cat([self.bos(b, codes.device), codes[:, :, :-1]], dim=2)  # previous frame at each step
        x = self.embed_frames(inputs)
        targets = codes.clone()
        fmask = padding_mask(frame_lengths, f)
        if cfg.conditioning == "aligned":
            if self.training and cfg.prev_frame_dropout > 0:
                keep = (torch.rand(b, f, 1, device=x.device) >= cfg.prev_frame_dropout).to(x.dtype)
                x = x * keep
            cond, _ = self.frame_conditioning(text, text_lengths, durations, n_frames=f, speaker=speaker)
            h = self.transformer(x + cond)
        elif cfg.conditioning == "prefix":
            # [text (P)] [BOS a_1 .. a_F] ; the state at a_F predicts EOS -> F + 1 predictions
            x = torch.cat([x, self.embed_frames(codes[:, :, -1:])], dim=1)  # a_F as the last input
            t = self.text_emb(text)
            if speaker is not None and cfg.n_speakers > 0:
                t = t + self.speaker_emb(speaker)[:, None]
            p = text.shape[1]
            # text is LEFT-padded (see collate): it always ends right before BOS, as at inference.
            h = self.transformer(torch.cat([t, x], dim=1))[:, p:]
            eos = torch.full((b, k, 1), cfg.eos_code - 1, dtype=torch.long, device=codes.device)  # class id of EOS
            targets = torch.cat([codes, eos], dim=2)
            # place EOS right after each item's last real frame
            idx = frame_lengths.clamp(max=f)
            targets[torch.arange(b), :, idx] = cfg.codebook_size
            fmask = padding_mask(frame_lengths + 1, f + 1)
        else:
            h = self.transformer(x)
        logits = self.head_logits(h, targets)
        losses = torch.stack([F.cross_entropy(lg[fmask], targets[:, j][fmask]) for j, lg in enumerate(logits)])
        return TalkerOutput(logits=logits, loss=losses.mean(), losses=losses)

    # ---- incremental decoding (explicit caches; the sampling loops are infer.talker.TalkerGenerator) ---
    @property
    def device(self) -> torch.device:
        return self.heads[0].weight.device

    def make_caches(self, batch: int, max_len: int, device=None, window: int | None = None) -> list[KVCache]:
        """KV caches for `max_len` positions in the model's dtype (`window`: decoding steps attend to the
        last `window` positions only, for inputs longer than the training utterances)."""
        w = self.heads[0].weight
        return make_caches(self.transformer.cfg, batch, max_len, device or w.device, w.dtype, window)

    def prefill(self, caches: list[KVCache], text: torch.Tensor | None = None, speaker: torch.Tensor | None = None,
                cond: torch.Tensor | None = None, batch: int = 1) -> torch.Tensor:
        """Run the prompt into empty `caches`; returns the state [B, D] that predicts the first frame.

        The prompt is the BOS frame, after the text (prefix mode: `text` [B, P], `speaker`) or plus the
        first frame's conditioning (aligned mode: `cond` [B, F, D] from `frame_conditioning`)."""
        cfg = self.cfg
        b = text.shape[0] if text is not None else cond.shape[0] if cond is not None else batch
        device = text.device if text is not None else self.device
        x = self.embed_frames(self.bos(b, device))
        if cfg.conditioning == "aligned":
            x = x + cond[:, :1]
        elif cfg.conditioning == "prefix" and text is not None:
            t = self.text_emb(text)
            if speaker is not None and cfg.n_speakers > 0:
                t = t + self.speaker_emb(speaker)[:, None]
            x = torch.cat([t, x], dim=1)
        return self.transformer(x, start=0, caches=caches)[:, -1]

    def step(self, frame: torch.Tensor, caches: list[KVCache], cond: torch.Tensor | None = None) -> torch.Tensor:
        """Feed one frame [B, K] at the next position (aligned mode: plus its conditioning `cond` [B, 1, D]);
        returns the state [B, D] that predicts the frame after it."""
        x = self.embed_frames(frame[:, :, None])
        if cond is not None:
            x = x + cond
        return self.transformer(x, start=caches[0].length, caches=caches)[:, -1]

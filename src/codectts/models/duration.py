"""Duration model: phonemes -> frames per phoneme (non-autoregressive, log-duration regression).

A small bidirectional transformer over phoneme ids with a linear head predicting log(1 + d).
At inference, continuous durations are divided by `speed` and turned into integers by rounding
the cumulative boundaries (not each phoneme alone), so the total length carries no rounding drift.
`DurationLength` (below) makes it the length source of the non-autoregressive models.
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from codectts.errors import ConfigError
from codectts.models.blocks import Transformer, TransformerConfig, padding_mask
from codectts.models.length import check_speed


@dataclass
class DurationConfig:
    text_vocab: int = 151
    dim: int = 192
    n_layers: int = 3
    n_heads: int = 4
    ffn_dim: int = 512
    dropout: float = 0.1
    frame_rate: float = 21.533203125  # frames the durations are counted in
    max_seq_len: int = 1024

    def to_dict(self) -> dict:
        return asdict(self)


def round_durations(cont: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Continuous durations [B, P] -> integers by rounding cumulative boundaries (total stays exact)."""
    if mask is not None:
        cont = cont * mask
    bounds = torch.round(cont.cumsum(-1))
    return torch.diff(bounds, dim=-1, prepend=torch.zeros_like(bounds[..., :1])).long().clamp(min=0)


class DurationModel(nn.Module):
    def __init__(self, cfg: DurationConfig):
        super().__init__()
        self.cfg = cfg
        self.emb = nn.Embedding(cfg.text_vocab, cfg.dim)
        self.encoder = Transformer(TransformerConfig(dim=cfg.dim, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
                                                     n_kv_heads=cfg.n_heads, ffn_dim=cfg.ffn_dim, causal=False,
                                                     dropout=cfg.dropout, max_seq_len=cfg.max_seq_len))
        self.head = nn.Linear(cfg.dim, 1)

    def forward(self, text: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """text [B, P] -> predicted log(1 + frames) [B, P]."""
        mask = padding_mask(lengths, text.shape[1])
        h = self.encoder(self.emb(text), mask=mask[:, None, None, :])
        return self.head(h)[..., 0]

    def loss(self, text, lengths, durations) -> torch.Tensor:
        mask = padding_mask(lengths, text.shape[1])
        pred = self(text, lengths)
        return F.mse_loss(pred[mask], torch.log1p(durations.float())[mask])

    @torch.no_grad()
    def predict(self, text: torch.Tensor, lengths: torch.Tensor | None = None, speed: float = 1.0) -> torch.Tensor:
        """Integer frames per phoneme [B, P]; every utterance gets at least one frame."""
        speed = check_speed(speed)
        if lengths is None:
            lengths = (text != 0).sum(1)
        mask = padding_mask(lengths, text.shape[1])
        cont = torch.expm1(self(text, lengths)).clamp(min=0) / speed
        d = round_durations(cont, mask)
        empty = d.sum(1) == 0
        if empty.any():
            d[empty, 0] = 1
        return d

    def n_frames(self, text: torch.Tensor, speed: float = 1.0) -> int:
        """Total frames of one utterance [1, P] at this model's frame rate (for text: `DurationLength`)."""
        return int(self.predict(text, speed=speed).sum())


class DurationLength:
    """A `LengthSource` backed by a trained duration model (issue 10): the utterance gets the sum of the
    predicted phoneme durations, re-timed from the duration model's frame rate to the consumer's
    (e.g. a TRM on 12.5 Hz Mimi codes). Replaces the character-rate guess for non-autoregressive models.

    `path` is a duration part folder; relative paths resolve against `root` (the folder of the part
    that stores this source, so a TRM release can carry its duration model inside it).
    """

    kind = "duration_model"

    def __init__(self, path: str | os.PathLike, frame_rate: float, min_frames: int = 1,
                 max_frames: int | None = None, root: str | os.PathLike | None = None):
        from codectts.models.talker_io import load_duration
        from codectts.text.tokenizers import PhonemeTokenizer

        if not frame_rate > 0:
            raise ConfigError(f"frame_rate must be positive, got {frame_rate}")
        if max_frames is not None and max_frames < min_frames:
            raise ConfigError(f"max_frames {max_frames} < min_frames {min_frames}")
        self.path, self.frame_rate = str(path), float(frame_rate)
        self.min_frames, self.max_frames = max(1, int(min_frames)), max_frames
        full = Path(root) / path if root is not None and not Path(path).is_absolute() else Path(path)
        self.model = load_duration(full)
        self.tokenizer = PhonemeTokenizer()
        if self.model.cfg.text_vocab < self.tokenizer.vocab_size:
            raise ConfigError(f"{full}: duration model has {self.model.cfg.text_vocab} symbols, the phoneme "
                              f"tokenizer {self.tokenizer.vocab_size}")

    def durations(self, text: str, speed: float = 1.0) -> list[int]:
        """Frames per phoneme token of `self.tokenizer.encode(text)`, at the duration model's rate."""
        ids = torch.tensor([self.tokenizer.encode(text)])
        return self.model.predict(ids, speed=speed)[0].tolist()

    def n_frames(self, text: str, speed: float = 1.0) -> int:
        total = sum(self.durations(text, speed))
        n = max(self.min_frames, round(total * self.frame_rate / self.model.cfg.frame_rate))
        return n if self.max_frames is None else min(n, self.max_frames)

    def to_dict(self) -> dict:
        return {"kind": self.kind, "path": self.path, "frame_rate": self.frame_rate,
                "min_frames": self.min_frames, "max_frames": self.max_frames}

    @classmethod
    def from_dict(cls, d: dict, root: str | os.PathLike | None = None) -> DurationLength:
        return cls(**{k: v for k, v in d.items() if k != "kind"}, root=root)

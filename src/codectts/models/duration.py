"""Duration model: phonemes -> frames per phoneme (non-autoregressive, log-duration regression).

A small bidirectional transformer over phoneme ids with a linear head predicting log(1 + d).
A regression in the log domain predicts a typical (geometric-mean-like) duration, which is shorter than
the mean: summed over an utterance, speech comes out several per cent fast (8 % on Festival slt, 7 % on
joe). So each evaluation in training fits `length_scale`, the ratio of true to predicted frames over the
training set (`calibrate_length`), and every prediction is multiplied by it. At inference, continuous
durations are divided by `speed` and turned into integers by rounding the cumulative boundaries (not
each phoneme alone), so the total length carries no rounding drift.
`models.length.DurationLength` makes it the length source of the non-autoregressive models.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from codectts.models.blocks import Transformer, TransformerConfig, padding_mask
from codectts.models.speed import check_speed
from codectts.parts import PartConfig, PartModel, make_preset


@dataclass
class DurationConfig(PartConfig):
    text_vocab: int = 151
    dim: int = 192
    n_layers: int = 3
    n_heads: int = 4
    ffn_dim: int = 512
    dropout: float = 0.1
    frame_rate: float = 21.533203125  # frames the durations are counted in
    max_seq_len: int = 1024
    length_scale: float = 1.0  # true / predicted frames over the training set (fitted by calibrate_length)


PRESETS: dict[str, dict] = {
    "base": {},  # `codectts train duration`'s defaults: d 192 x 3 layers
    "joe": dict(dim=128),  # the shipped voice's (3.2 MB of fp32 weights)
    "tiny": dict(text_vocab=20, dim=32, n_layers=1, n_heads=2, ffn_dim=64),  # tests
}


def preset(name: str, **overrides) -> DurationConfig:
    return make_preset(DurationConfig, PRESETS, name, overrides)


def round_durations(cont: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
    """Continuous durations [B, P] -> integers by rounding cumulative boundaries (total stays exact)."""
    if mask is not None:
        cont = cont * mask
    bounds = torch.round(cont.cumsum(-1))
    return torch.diff(bounds, dim=-1, prepend=torch.zeros_like(bounds[..., :1])).long().clamp(min=0)


class DurationModel(PartModel, nn.Module):
    model_type = "duration"
    config_class = DurationConfig

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

    def raw_frames(self, text: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """Continuous frames per phoneme [B, P], before `length_scale` and speed."""
        return torch.expm1(self(text, lengths)).clamp(min=0)

    @torch.no_grad()
    def predict(self, text: torch.Tensor, lengths: torch.Tensor | None = None, speed: float = 1.0) -> torch.Tensor:
        """Integer frames per phoneme [B, P]; every utterance gets at least one frame."""
        speed = check_speed(speed)
        if lengths is None:
            lengths = (text != 0).sum(1)
        mask = padding_mask(lengths, text.shape[1])
        cont = self.raw_frames(text, lengths) * self.cfg.length_scale / speed
        d = round_durations(cont, mask)
        empty = d.sum(1) == 0
        if empty.any():
            d[empty, 0] = 1
        return d

    @torch.no_grad()
    def calibrate_length(self, batches) -> float:
        """Fit `length_scale` so that predicted frames sum to the true ones over `batches` of (text [B, P],
        lengths [B], durations [B, P]); returns it. Continuous predictions, so rounding plays no part."""
        was_training = self.training
        self.eval()
        pred = true = 0.0
        for text, lengths, dur in batches:
            mask = padding_mask(lengths, text.shape[1])
            pred += float((self.raw_frames(text, lengths) * mask).sum())
            true += float((dur * mask).sum())
        self.train(was_training)
        if pred <= 0 or true <= 0:
            raise ValueError("calibrate_length: no frames to fit the length scale on")
        self.cfg.length_scale = true / pred
        return self.cfg.length_scale

    def n_frames(self, text: torch.Tensor, speed: float = 1.0) -> int:
        """Total frames of one utterance [1, P] at this model's frame rate (for text: `DurationLength`)."""
        return int(self.predict(text, speed=speed).sum())

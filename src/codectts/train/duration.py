"""Recipe: `codectts train duration --codes CODES --out RUN` (issue 10: durations from phonemes).

Trains on the teacher's durations re-timed to the codec frame rate (code cache index). Held-out
metrics: mean absolute error per phoneme (frames) and relative error of the total utterance length.
"""
from __future__ import annotations

import json
import random
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
import typer

from codectts.errors import DataError
from codectts.train.cli import RunOptions, codes_option, recipe_command
from codectts.train.loop import Task, TrainConfig, Trainer


def duration_items(cache, tokenizer) -> list[tuple[list[int], list[int]]]:
    from codectts.train.talker import phoneme_ids

    out = []
    for e in cache.entries:
        if e.phonemes and e.durations and len(e.phonemes) == len(e.durations):
            try:
                out.append((phoneme_ids(e.phonemes, tokenizer), e.durations))
            except DataError:
                continue
    return out


def pad_batch(items):
    p = max(len(t) for t, _ in items)
    text = torch.zeros(len(items), p, dtype=torch.long)
    dur = torch.zeros(len(items), p, dtype=torch.long)
    lengths = torch.tensor([len(t) for t, _ in items])
    for i, (t, d) in enumerate(items):
        text[i, :len(t)] = torch.tensor(t)
        dur[i, :len(d)] = torch.tensor(d)
    return text, lengths, dur


def batches(items, size: int):
    """Padded (text, lengths, durations) batches of `items` in order, the last one possibly smaller."""
    return (pad_batch(items[s:s + size]) for s in range(0, len(items), size))


CALIBRATION_UTTERANCES = 2000  # enough for a stable ratio of summed frames; a pass over them takes seconds


def fit_length_scale(model, train_items) -> float:
    """Fit the model's `length_scale` on (up to CALIBRATION_UTTERANCES of) its training utterances."""
    return model.calibrate_length(batches(train_items[:CALIBRATION_UTTERANCES], 64))


class DurationTask(Task):
    def __init__(self, model, train_items, dev_items, batch_size: int, seed: int):
        self.model, self.train_items, self.dev_items = model, train_items, dev_items
        self.batch_size, self.seed = batch_size, seed

    def train_batches(self, epoch):
        order = list(range(len(self.train_items)))
        random.Random(f"{self.seed}:{epoch}").shuffle(order)
        starts = range(0, len(order) - self.batch_size + 1, self.batch_size)
        for s in self.shard(list(starts)):
            yield pad_batch([self.train_items[i] for i in order[s:s + self.batch_size]])

    def loss(self, batch):
        text, lengths, dur = batch
        return self.model.loss(text, lengths, dur), {}

    def evaluate(self):
        """Refits `length_scale` on the training utterances first (see models/duration), so the held-out
        lengths and the exported part both carry the current weights' scale."""
        scale = fit_length_scale(self.model, self.train_items)
        return {**duration_metrics(self.model, self.dev_items), "length_scale": scale}

    def export(self, path: Path):
        self.model.save(path)


@torch.no_grad()
def duration_metrics(model, items) -> dict[str, float]:
    model.eval()
    abs_err, n_ph, rel, logmse = 0.0, 0, [], 0.0
    for text, lengths, dur in batches(items, 32):
        pred = model.predict(text, lengths)
        for i in range(text.shape[0]):
            n = int(lengths[i])
            abs_err += float((pred[i, :n] - dur[i, :n]).abs().sum())
            n_ph += n
            rel.append(abs(float(pred[i, :n].sum() - dur[i, :n].sum())) / max(1, float(dur[i, :n].sum())))
        logmse += float(model.loss(text, lengths, dur)) * text.shape[0]
    return {"score": logmse / len(items), "log_mse": logmse / len(items), "mae_frames": abs_err / n_ph,
            "total_rel_err": sum(rel) / len(rel)}


@dataclass
class DurationRunConfig:
    """What `codectts train duration` trains (saved in each checkpoint's run.json)."""

    codes: str = "data/codes"
    dim: int = 192
    n_layers: int = 3
    batch_size: int = 32
    seed: int = 0


def train_duration(rc: DurationRunConfig, tcfg: TrainConfig, resume: bool = False) -> dict[str, float]:
    from codectts.data.codecache import CodeCache
    from codectts.models.duration import DurationConfig, DurationModel
    from codectts.text.tokenizers import PhonemeTokenizer

    tok = PhonemeTokenizer()
    cache = CodeCache(rc.codes, "train")
    items = duration_items(cache, tok)
    try:
        dev = duration_items(CodeCache(rc.codes, "dev"), tok)
    except DataError:
        dev = []
    if not dev:
        dev, items = items[:50], items[50:]
    if not items:
        raise DataError(f"{rc.codes}: no utterances with teacher durations")
    model = DurationModel(DurationConfig(text_vocab=tok.vocab_size, dim=rc.dim, n_layers=rc.n_layers,
                                         frame_rate=cache.frame_rate))
    trainer = Trainer(DurationTask(model, items, dev, rc.batch_size, rc.seed), tcfg,
                      run_config={"duration_run": asdict(rc), "model": asdict(model.cfg)})
    if resume:
        trainer.resume()
    return trainer.fit()


def register(app: typer.Typer) -> None:
    @recipe_command(app, "duration", out=Path("runs/duration"), max_steps=3000, lr=1e-3, warmup_steps=100,
                    batch_size=32, eval_every=500, save_every=500, precision="no", seed=0)
    def train_duration_cmd(opts: RunOptions, codes: Path = codes_option(),
                           dim: int = typer.Option(192, help="Model width."),
                           n_layers: int = typer.Option(3, help="Transformer layers.")):
        """Train the phoneme duration model (the length source of the aligned Talker and the TRM)."""
        rc = DurationRunConfig(codes=str(codes), dim=dim, n_layers=n_layers, batch_size=opts.batch_size,
                               seed=opts.seed)
        typer.echo(json.dumps(train_duration(rc, opts.train_config(), resume=opts.resume)))

"""Recipe: `codectts train duration --data-path TOKDIR --out RUN` (issue 10: durations from phonemes).

Trains on the teacher's durations re-timed to the codec frame rate (code cache index). Held-out
metrics: mean absolute error per phoneme (frames) and relative error of the total utterance length.
"""
from __future__ import annotations

import json
import random
from pathlib import Path

import torch
import typer

from codectts.errors import DataError
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


class DurationTask(Task):
    def __init__(self, model, train_items, dev_items, batch_size: int, seed: int):
        self.model, self.train_items, self.dev_items = model, train_items, dev_items
        self.batch_size, self.seed = batch_size, seed

    def train_batches(self, epoch):
        order = list(range(len(self.train_items)))
        random.Random(f"{self.seed}:{epoch}").shuffle(order)
        for s in range(0, len(order) - self.batch_size + 1, self.batch_size):
            yield pad_batch([self.train_items[i] for i in order[s:s + self.batch_size]])

    def loss(self, batch):
        text, lengths, dur = batch
        return self.model.loss(text, lengths, dur), {}

    def evaluate(self):
        return duration_metrics(self.model, self.dev_items)

    def export(self, path: Path):
        from codectts.models.talker_io import save_duration

        save_duration(path, self.model)


@torch.no_grad()
def duration_metrics(model, items) -> dict[str, float]:
    model.eval()
    abs_err, n_ph, rel, logmse = 0.0, 0, [], 0.0
    for s in range(0, len(items), 32):
        text, lengths, dur = pad_batch(items[s:s + 32])
        pred = model.predict(text, lengths)
        for i in range(text.shape[0]):
            n = int(lengths[i])
            abs_err += float((pred[i, :n] - dur[i, :n]).abs().sum())
            n_ph += n
            rel.append(abs(float(pred[i, :n].sum() - dur[i, :n].sum())) / max(1, float(dur[i, :n].sum())))
        logmse += float(model.loss(text, lengths, dur)) * text.shape[0]
    return {"score": logmse / len(items), "log_mse": logmse / len(items), "mae_frames": abs_err / n_ph,
            "total_rel_err": sum(rel) / len(rel)}


def register(app: typer.Typer) -> None:
    @app.command("duration")
    def train_duration(data_path: Path = typer.Option(..., help="Code cache with teacher durations."),
                       out: Path = typer.Option(Path("runs/duration")), max_steps: int = typer.Option(3000),
                       max_minutes: float | None = typer.Option(None), batch_size: int = typer.Option(32),
                       dim: int = typer.Option(192), n_layers: int = typer.Option(3), lr: float = typer.Option(1e-3),
                       eval_every: int = typer.Option(500), resume: bool = typer.Option(False),
                       seed: int = typer.Option(0)):
        """Train the phoneme duration model (the length source of the aligned Talker and the TRM)."""
        from codectts.data.codecache import CodeCache
        from codectts.models.duration import DurationConfig, DurationModel
        from codectts.text.tokenizers import PhonemeTokenizer

        tok = PhonemeTokenizer()
        cache = CodeCache(data_path, "train")
        items = duration_items(cache, tok)
        try:
            dev = duration_items(CodeCache(data_path, "dev"), tok)
        except DataError:
            dev = []
        if not dev:
            dev, items = items[:50], items[50:]
        if not items:
            raise DataError(f"{data_path}: no utterances with teacher durations")
        model = DurationModel(DurationConfig(text_vocab=tok.vocab_size, dim=dim, n_layers=n_layers,
                                             frame_rate=cache.frame_rate))
        tcfg = TrainConfig(out_dir=str(out), max_steps=max_steps, max_minutes=max_minutes, lr=lr, warmup_steps=100,
                           eval_every=eval_every, save_every=eval_every, seed=seed)
        trainer = Trainer(DurationTask(model, items, dev, batch_size, seed), tcfg)
        if resume:
            trainer.resume()
        typer.echo(json.dumps(trainer.fit()))

"""Recipe: `codectts train talker --config configs/talker.json` (seed 001 / Stage D part 2).

The JSON carries the seed's fields (d_model, n_layers, n_heads, codebooks, codebook_size, data_path,
batch_size, num_epochs, learning_rate) plus ours (conditioning, n_kv_heads, ffn_dim, text_layers,
depth_heads, max_minutes, ...). `data_path` is a code cache (`codectts codes extract`); the shared run
flags (`--codes`, `--out`, `--lr`, `--max-minutes`, ...) override the JSON. Sequences are
cropped/padded to the `max_mel_length_percentile` (seed: 95th) length; `static_shapes` pads every
batch to it (for torch.compile / CUDA graphs). Logs loss and per-head perplexity, train and held-out.
"""
from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import typer

from codectts.errors import ConfigError, DataError
from codectts.schema import from_dict
from codectts.train.cli import RunOptions, codes_option, recipe_command
from codectts.train.loop import Task, TrainConfig, Trainer, world_size

log = logging.getLogger(__name__)


@dataclass
class TalkerRunConfig:
    # the seed's fields
    d_model: int = 192
    n_layers: int = 4
    n_heads: int = 3
    codebooks: int = 2
    codebook_size: int = 128
    data_path: str = "data/codes"
    batch_size: int = 16
    num_epochs: int = 25
    learning_rate: float = 3e-4
    # ours
    n_kv_heads: int = 1
    ffn_dim: int = 768
    conditioning: str = "aligned"
    text_layers: int = 2
    depth_heads: bool = True
    dropout: float = 0.0
    prev_frame_dropout: float = 0.0
    max_tokens: int = 6000
    max_mel_length_percentile: float = 95.0
    static_shapes: bool = False
    max_steps: int = 0  # 0 = num_epochs worth of steps
    max_minutes: float | None = None
    warmup_steps: int = 200
    weight_decay: float = 0.01
    eval_every: int = 250
    sample_every: int = 0
    out_dir: str = "runs/talker"
    seed: int = 0
    mixed_precision: str = "auto"  # bf16 on a CUDA device that supports it, else no
    wandb: bool = False
    init_from: str | None = None  # a talker part (e.g. a voice's talker/) to fine-tune from

    @classmethod
    def from_json(cls, path: Path, overrides: dict | None = None) -> TalkerRunConfig:
        try:
            d = json.loads(Path(path).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise ConfigError(f"{path}: no such config") from None
        except json.JSONDecodeError as e:
            raise ConfigError(f"{path}: invalid JSON ({e})") from None
        if not isinstance(d, dict):
            raise ConfigError(f"{path}: must be a JSON object")
        d = {k: v for k, v in d.items() if k != "_comment"}
        d.update({k: v for k, v in (overrides or {}).items() if v is not None})
        return from_dict(cls, d, str(path))  # unknown fields and wrong types are ConfigErrors naming the field


def phoneme_ids(phonemes: list[str], tokenizer) -> list[int]:
    """Teacher phonemes (framed by ^ ... $) -> ids; a symbol outside the inventory is a DataError."""
    try:
        return [tokenizer.index[p] for p in phonemes]
    except KeyError as e:
        raise DataError(f"teacher phoneme {e.args[0]!r} is not in the tokenizer inventory") from None


@dataclass
class TalkerItem:
    codes: torch.Tensor  # [K, F]
    text: list[int]
    durations: list[int]
    speaker: int = 0


def collate(items: list[TalkerItem], conditioning: str, pad_frames: int | None = None) -> dict:
    b = len(items)
    k = items[0].codes.shape[0]
    f = pad_frames or max(it.codes.shape[1] for it in items)
    p = max(len(it.text) for it in items)
    codes = torch.zeros(b, k, f, dtype=torch.long)
    text = torch.zeros(b, p, dtype=torch.long)
    dur = torch.zeros(b, p, dtype=torch.long)
    flen = torch.zeros(b, dtype=torch.long)
    tlen = torch.zeros(b, dtype=torch.long)
    for i, it in enumerate(items):
        n = min(it.codes.shape[1], f)
        codes[i, :, :n] = it.codes[:, :n]
        flen[i] = n
        tlen[i] = len(it.text)
        if conditioning == "prefix":  # left-pad: text ends right before the audio, as at inference
            text[i, p - len(it.text):] = torch.tensor(it.text)
        else:
            text[i, :len(it.text)] = torch.tensor(it.text)
            dur[i, :len(it.durations)] = torch.tensor(it.durations)
    return {"codes": codes, "frame_lengths": flen, "text": text, "text_lengths": tlen, "durations": dur,
            "speaker": torch.tensor([it.speaker for it in items])}


class TalkerTask(Task):
    def __init__(self, model, train_items, dev_items, rc: TalkerRunConfig, max_frames: int):
        from codectts.data.sampler import DynamicBatchSampler

        self.model, self.rc = model, rc
        self.train_items, self.dev_items = train_items, dev_items
        self.max_frames = max_frames
        cond = model.cfg.conditioning
        lengths = [min(it.codes.shape[1], max_frames) + (len(it.text) if cond == "prefix" else 0) for it in train_items]
        self.sampler = DynamicBatchSampler(lengths, max_samples=rc.batch_size, max_tokens=rc.max_tokens, seed=rc.seed)

    @property
    def device(self):
        return self.model.heads[0].weight.device

    def batch(self, items):
        b = collate(items, self.model.cfg.conditioning, self.max_frames if self.rc.static_shapes else None)
        return {k: v.to(self.device) for k, v in b.items()}

    def train_batches(self, epoch: int):
        for idx in self.shard(self.sampler.batches(epoch)):
            yield self.batch([self.train_items[i] for i in idx])

    def _forward(self, b):
        return self.model(b["codes"], b["frame_lengths"], b["text"], b["text_lengths"], b["durations"],
                          b["speaker"] if self.model.cfg.n_speakers > 0 else None)

    def loss(self, b):
        out = self._forward(b)
        return out.loss, {f"ppl_{k}": math.exp(min(float(v), 20)) for k, v in enumerate(out.losses.detach())}

    def evaluate(self) -> dict[str, float]:
        tot, n = None, 0
        for s in range(0, len(self.dev_items), 8):
            items = self.dev_items[s:s + 8]
            out = self._forward(self.batch(items))
            tot = out.losses.detach() * len(items) if tot is None else tot + out.losses.detach() * len(items)
            n += len(items)
        ce = (tot / n).cpu()
        res = {"score": float(ce.mean()), "dev_ce": float(ce.mean())}
        res.update({f"dev_ppl_{k}": math.exp(float(v)) for k, v in enumerate(ce)})
        return res

    def export(self, path: Path) -> None:
        self.model.save(path)


def load_items(cache, tokenizer, max_frames: int | None, conditioning: str) -> list[TalkerItem]:
    items, skipped = [], 0
    speakers = sorted({e.speaker for e in cache.entries})
    spk_index = {s: i for i, s in enumerate(speakers)}
    for i, e in enumerate(cache.entries):
        if not e.phonemes or (conditioning == "aligned" and not e.durations):
            skipped += 1
            continue
        if conditioning == "prefix" and max_frames and e.n_frames > max_frames:
            skipped += 1  # cropping would remove the EOS the prefix model must learn
            continue
        try:
            ids = phoneme_ids(e.phonemes, tokenizer)
        except DataError as err:
            log.warning("skip %s: %s", e.id, err)
            skipped += 1
            continue
        items.append(TalkerItem(codes=cache.codes(i), text=ids, durations=e.durations, speaker=spk_index[e.speaker]))
    if skipped:
        log.warning("%s split: skipped %d of %d utterances (no alignment, too long or bad phonemes)",
                    cache.split, skipped, len(cache.entries))
    return items


def build_model(rc: TalkerRunConfig, text_vocab: int, n_speakers: int):
    from codectts.models.talker import Talker, TalkerConfig

    cfg = TalkerConfig(dim=rc.d_model, n_layers=rc.n_layers, n_heads=rc.n_heads, n_kv_heads=rc.n_kv_heads,
                       ffn_dim=rc.ffn_dim, n_codebooks=rc.codebooks, codebook_size=rc.codebook_size,
                       conditioning=rc.conditioning, text_vocab=text_vocab if rc.conditioning != "none" else 0,
                       text_layers=rc.text_layers if rc.conditioning == "aligned" else 0,
                       n_speakers=n_speakers if n_speakers > 1 else 0, depth_heads=rc.depth_heads,
                       dropout=rc.dropout, prev_frame_dropout=rc.prev_frame_dropout, max_seq_len=4096)
    return Talker(cfg)


def train_talker(rc: TalkerRunConfig, resume: bool = False, **train: Any) -> dict:
    """Train on `rc.data_path`; `train` sets TrainConfig fields the JSON does not carry (keep_last, log_every,
    grad_clip, save_every, progress)."""
    from codectts.data.codecache import CodeCache
    from codectts.text.tokenizers import PhonemeTokenizer

    cache = CodeCache(rc.data_path, "train")
    if (cache.n_codebooks, cache.codebook_size) != (rc.codebooks, rc.codebook_size):
        raise ConfigError(f"config says {rc.codebooks} x {rc.codebook_size} codes but {rc.data_path} holds "
                          f"{cache.n_codebooks} x {cache.codebook_size}")
    try:
        dev_cache = CodeCache(rc.data_path, "dev")
    except DataError:
        dev_cache = None
    tok = PhonemeTokenizer()
    lengths = np.array(cache.lengths())
    if len(lengths) == 0:
        raise DataError(f"{rc.data_path}: empty code cache")
    max_frames = int(np.percentile(lengths, rc.max_mel_length_percentile))
    items = load_items(cache, tok, max_frames, rc.conditioning)
    dev_items = load_items(dev_cache, tok, max_frames, rc.conditioning) if dev_cache and len(dev_cache) else []
    if not dev_items:
        dev_items, items = items[:50], items[50:]
    n_speakers = len({e.speaker for e in cache.entries})
    model = build_model(rc, tok.vocab_size, n_speakers)
    if rc.init_from:  # a --resume that finds a checkpoint overwrites these weights with the run's own
        model.init_from(rc.init_from)
    task = TalkerTask(model, items, dev_items, rc, max_frames)
    steps_per_epoch = max(1, len(task.sampler.batches(0)) // world_size())
    tcfg = TrainConfig(**{**dict(out_dir=rc.out_dir, max_steps=rc.max_steps or rc.num_epochs * steps_per_epoch,
                                 max_epochs=None, max_minutes=rc.max_minutes, lr=rc.learning_rate,
                                 weight_decay=rc.weight_decay, warmup_steps=rc.warmup_steps,
                                 eval_every=rc.eval_every, save_every=rc.eval_every, sample_every=rc.sample_every,
                                 seed=rc.seed, mixed_precision=rc.mixed_precision), **train})
    log.info("talker: %.2fM parameters, %d train / %d dev utterances, %d steps/epoch, max %d frames",
             model.num_params() / 1e6, len(items), len(dev_items), steps_per_epoch, max_frames)
    trainer = Trainer(task, tcfg, run_config={"talker": asdict(rc), "model": model.cfg.to_dict()})
    if rc.wandb:
        _wandb_hook(trainer, rc)
    if resume:
        trainer.resume()
    return trainer.fit()


def _wandb_hook(trainer, rc):
    try:
        import wandb
    except ImportError:
        raise ConfigError("--wandb needs the wandb package (pip install wandb)") from None
    run = wandb.init(project="codectts", config=asdict(rc), dir=rc.out_dir)
    orig = trainer.logger.log

    def log_both(step, kind, metrics):
        orig(step, kind, metrics)
        run.log({f"{kind}/{k}": v for k, v in metrics.items()}, step=step)

    trainer.logger.log = log_both


# shared flag -> TalkerRunConfig field it overrides (the JSON keeps the seed's names)
FLAG_FIELDS = {"lr": "learning_rate", "max_steps": "max_steps", "max_minutes": "max_minutes",
               "warmup_steps": "warmup_steps", "weight_decay": "weight_decay", "batch_size": "batch_size",
               "eval_every": "eval_every", "sample_every": "sample_every", "precision": "mixed_precision",
               "seed": "seed"}
TRAIN_FLAGS = ("grad_clip", "log_every", "save_every", "keep_last")  # not in the JSON: straight to TrainConfig


def register(app: typer.Typer) -> None:
    @recipe_command(app, "talker", config_file=True)
    def train_talker_cmd(opts: RunOptions,
                         config: Path = typer.Option(..., help="JSON config (see configs/talker*.json)."),
                         codes: Path | None = codes_option(required=False),
                         init_from: str | None = typer.Option(
                             None, help="Start from a trained talker part, e.g. src/codectts/voices/joe/talker "
                                        "(fine-tuning on your own data; the config must describe the same "
                                        "architecture).")):
        """Train the Talker on a code cache (CPU or GPU; bf16 on GPU). Flags override the JSON config."""
        overrides = {field: getattr(opts, flag) for flag, field in FLAG_FIELDS.items()}
        overrides["out_dir"] = str(opts.out) if opts.out is not None else None
        overrides.update(data_path=str(codes) if codes is not None else None, init_from=init_from)
        rc = TalkerRunConfig.from_json(config, overrides)
        train = {k: getattr(opts, k) for k in TRAIN_FLAGS if getattr(opts, k) is not None}
        typer.echo(json.dumps(train_talker(rc, resume=opts.resume, progress=opts.progress, **train)))

"""The one training loop every recipe uses.

A recipe supplies a `Task` (model, batches, loss, evaluation, export); the `Trainer` owns the rest:
accelerate (CPU, CUDA, bf16, several GPUs), AdamW with decay on matrices only, warmup + cosine LR,
gradient clipping, non-finite-loss guard, tqdm progress, JSONL + TensorBoard logs, atomic
checkpoints (keep-last-N) with full `--resume`, the best model exported as a release part, and a
wall-clock budget so CPU runs stop cleanly (with a checkpoint) when time is up.
"""
from __future__ import annotations

import json
import logging
import math
import random
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codectts.errors import CodecTTSError, ConfigError
from codectts.parts import replace_dir

log = logging.getLogger(__name__)


class TrainingError(CodecTTSError):
    """Training cannot go on (e.g. the loss stayed NaN); the last checkpoint is intact."""


@dataclass
class TrainConfig:
    out_dir: str = "runs/model"
    max_steps: int = 10_000
    max_epochs: int | None = None
    max_minutes: float | None = None  # wall-clock budget for this invocation (also shortens the schedule)
    lr: float = 3e-4
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 200
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    log_every: int = 25
    eval_every: int = 500
    save_every: int = 500
    sample_every: int = 0
    keep_last: int = 2
    mixed_precision: str = "no"  # "bf16" on a GPU that supports it
    seed: int = 0
    max_bad_steps: int = 20
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self):
        if self.max_steps <= 0:
            raise ConfigError("max_steps must be positive")
        if self.mixed_precision not in ("no", "bf16", "fp16"):
            raise ConfigError(f"mixed_precision must be no|bf16|fp16, got {self.mixed_precision!r}")


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup then cosine decay to lr * min_lr_ratio at max_steps (a pure function of step)."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps))
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress)))


def adamw(
    model: torch.nn.Module, cfg: TrainConfig, params: Iterable[torch.nn.Parameter] | None = None
) -> torch.optim.AdamW:
    """AdamW with weight decay on matrices only (norms, biases and gains are not decayed)."""
    params = [p for p in (params if params is not None else model.parameters()) if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    return torch.optim.AdamW(
        [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=cfg.lr,
        betas=cfg.betas,
    )


class Task:
    """What a recipe provides. Override `train_step` for anything but one optimizer on one loss (GANs)."""

    model: torch.nn.Module

    def configure_optimizers(self, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
        return [adamw(self.model, cfg)]

    def train_batches(self, epoch: int) -> Iterable[Any]:
        raise NotImplementedError

    def loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def train_step(self, batch: Any, trainer: Trainer) -> dict[str, float]:
        opt = trainer.optimizers[0]
        with trainer.accelerator.autocast():
            loss, metrics = self.loss(batch)
        if not torch.isfinite(loss):
            return {"loss": float("nan")}
        opt.zero_grad(set_to_none=True)
        trainer.accelerator.backward(loss)
        if trainer.cfg.grad_clip:
            metrics["grad_norm"] = float(
                trainer.accelerator.clip_grad_norm_(self.model.parameters(), trainer.cfg.grad_clip)
            )
        opt.step()
        return {"loss": float(loss.detach()), **metrics}

    def evaluate(self) -> dict[str, float]:
        """Held-out metrics; must contain 'score' (lower is better) to pick the best checkpoint."""
        return {}

    def export(self, path: Path) -> None:
        """Write the release part (config.json + model.safetensors) for the current weights."""
        raise NotImplementedError

    def sample(self, out_dir: Path, step: int) -> None:
        """Optional: write audio samples for listening."""

    def state_dict_extra(self) -> dict:
        return {}

    def load_state_extra(self, state: dict) -> None:
        pass


class JsonlLogger:
    def __init__(self, out_dir: Path, tensorboard: bool):
        self.path = out_dir / "log.jsonl"
        self.tb = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(out_dir / "tensorboard"))
            except ImportError:
                log.info("tensorboard not installed: logging to %s only", self.path)

    def log(self, step: int, kind: str, metrics: dict[str, float]) -> None:
        rec = {"step": step, "kind": kind, "time": round(time.time(), 2), **{k: _round(v) for k, v in metrics.items()}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if self.tb is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    self.tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self):
        if self.tb is not None:
            self.tb.close()


def _round(v):
    return round(v, 6) if isinstance(v, float) else v


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


class Trainer:
    def __init__(self, task: Task, cfg: TrainConfig, run_config: dict | None = None):
        from accelerate import Accelerator

        self.task, self.cfg = task, cfg
        self.out = Path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.accelerator = Accelerator(mixed_precision=cfg.mixed_precision, cpu=not torch.cuda.is_available())
        seed_everything(cfg.seed)
        self.optimizers = task.configure_optimizers(cfg)
        prepared = self.accelerator.prepare(task.model, *self.optimizers)
        task.model, self.optimizers = prepared[0], list(prepared[1:])
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best: float = float("inf")
        self.bad_steps = 0
        self.schedule_fitted = False
        self.step_cap = cfg.max_steps  # a time-fitted schedule never runs longer than this
        self.run_config = {"train": asdict(cfg), **(run_config or {})}
        self.logger = JsonlLogger(self.out, cfg.tensorboard and self.accelerator.is_main_process)

    # ---- checkpoints -------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"

    def save_checkpoint(self) -> Path:
        """checkpoints/step_XXXXXXX/{model.pt state, optimizers, step, RNG}: written to a temp dir, renamed."""
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        final = self.ckpt_dir / f"step_{self.step:07d}"
        tmp = Path(tempfile.mkdtemp(dir=self.ckpt_dir, prefix=".tmp"))
        try:
            model = self.accelerator.unwrap_model(self.task.model)
            state = {
                "model": model.state_dict(),
                "optimizers": [o.state_dict() for o in self.optimizers],
                "step": self.step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "best": self.best,
                "extra": self.task.state_dict_extra(),
                "max_steps": self.cfg.max_steps,
                "schedule_fitted": self.schedule_fitted,
                "rng": {
                    "torch": torch.get_rng_state(),
                    "numpy": np.random.get_state()[1].tolist(),
                    "python": repr(random.getstate()),
                },
            }
            torch.save(state, tmp / "state.pt")
            (tmp / "run.json").write_text(json.dumps(self.run_config, indent=1, default=str))
            replace_dir(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for old in sorted(self.ckpt_dir.glob("step_*"))[: -self.cfg.keep_last]:
            shutil.rmtree(old, ignore_errors=True)
        return final

    def latest_checkpoint(self) -> Path | None:
        ckpts = (
            sorted(p for p in self.ckpt_dir.glob("step_*") if (p / "state.pt").exists())
            if self.ckpt_dir.exists()
            else []
        )
        return ckpts[-1] if ckpts else None

    def resume(self, path: Path | None = None) -> bool:
        path = path or self.latest_checkpoint()
        if path is None:
            log.info("no checkpoint in %s: starting fresh", self.ckpt_dir)
            return False
        try:
            state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        except Exception as e:
            raise ConfigError(f"{path}: unreadable checkpoint ({e})") from None
        model = self.accelerator.unwrap_model(self.task.model)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise ConfigError(f"{path}: checkpoint does not match this model's config ({str(e)[:200]})") from None
        for opt, s in zip(self.optimizers, state["optimizers"], strict=False):
            opt.load_state_dict(s)
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch, self.best = state.get("batch_in_epoch", 0), state["best"]
        self.task.load_state_extra(state.get("extra", {}))
        if state.get("schedule_fitted"):  # keep the shortened cosine the run was following
            self.cfg.max_steps = min(self.cfg.max_steps, state["max_steps"])
            self.schedule_fitted = True
        torch.set_rng_state(state["rng"]["torch"])
        log.info("resumed from %s (step %d, epoch %d)", path, self.step, self.epoch)
        return True

    # ---- the loop ----------------------------------------------------------------------
    def _batches(self) -> Iterator[Any]:
        while self.cfg.max_epochs is None or self.epoch < self.cfg.max_epochs:
            skip = self.batch_in_epoch
            for i, batch in enumerate(self.task.train_batches(self.epoch)):
                if i < skip:
                    continue  # resuming mid-epoch: same order (sampler seeded by epoch), skip what was done
                self.batch_in_epoch = i + 1
                yield batch
            self.epoch += 1
            self.batch_in_epoch = 0

    def fit_schedule_to_time(self, t_start: float, s_ref: int, t_ref: float) -> bool:
        """Set max_steps to what the time budget allows at the step rate measured since (s_ref, t_ref),
        so the cosine decay finishes before `max_minutes` instead of being cut off at a high LR.
        Never beyond the configured max_steps; True when the schedule changed."""
        cfg = self.cfg
        now = time.time()
        if cfg.max_minutes is None or self.step <= s_ref or now <= t_ref:
            return False
        rate = (self.step - s_ref) / (now - t_ref)
        left = cfg.max_minutes * 60 - (now - t_start)
        fitted = min(self.step_cap, self.step + max(1, int(0.95 * rate * left)))
        if fitted == cfg.max_steps or (not self.schedule_fitted and fitted > cfg.max_steps):
            return False
        log.info("time budget: %.1f steps/s -> schedule of %d steps (was %d)", rate, fitted, cfg.max_steps)
        cfg.max_steps = fitted
        self.schedule_fitted = True
        return True

    def fit(self) -> dict[str, float]:
        from tqdm import tqdm

        cfg = self.cfg
        t_start = time.time()
        last_eval: dict[str, float] = {}
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.step,
            desc=self.out.name,
            unit="step",
            disable=not cfg.progress or not self.accelerator.is_main_process,
            dynamic_ncols=True,
        )
        running: dict[str, list[float]] = {}
        stop_reason = "max_steps"
        # Time budget: fit the schedule when warmup ends, refit once 40 % of the way (in time or steps: start-up
        # and processes sharing the device make early step rates unreliable). The rate is measured
        # from a few steps in: the first ones pay for allocation and warm caches.
        s_ref, t_ref = None, t_start
        fit_at = self.step + max(self.cfg.warmup_steps - self.step, 20)
        fit_stage = 0 if cfg.max_minutes is not None and not self.schedule_fitted else 2
        start_step = self.step
        self.task.model.train()
        try:
            for batch in self._batches():
                if self.step >= cfg.max_steps:
                    break
                for opt in self.optimizers:
                    for g in opt.param_groups:
                        g["lr"] = lr_at(self.step, cfg)
                metrics = self.task.train_step(batch, self)
                if not math.isfinite(metrics.get("loss", 0.0)):
                    self.bad_steps += 1
                    log.warning("non-finite loss at step %d (%d in a row): step skipped", self.step, self.bad_steps)
                    if self.bad_steps >= cfg.max_bad_steps:
                        raise TrainingError(
                            f"loss was non-finite for {self.bad_steps} steps in a row at step "
                            f"{self.step}; last good checkpoint: {self.latest_checkpoint()}"
                        )
                    continue
                self.bad_steps = 0
                self.step += 1
                bar.update(1)
                if s_ref is None and self.step >= start_step + 5:
                    s_ref, t_ref = self.step, time.time()
                changed = False
                if fit_stage == 0 and self.step >= fit_at:
                    changed = self.fit_schedule_to_time(t_start, s_ref, t_ref)
                    fit_stage, s_ref, t_ref = (1 if changed else 2), self.step, time.time()
                elif fit_stage == 1 and (
                    time.time() - t_start >= 0.4 * cfg.max_minutes * 60
                    or self.step >= s_ref + 0.4 * (cfg.max_steps - s_ref)
                ):
                    fit_stage, changed = 2, self.fit_schedule_to_time(t_start, s_ref, t_ref)
                if changed:
                    bar.total = cfg.max_steps
                    bar.refresh()
                for k, v in metrics.items():
                    running.setdefault(k, []).append(v)
                if self.step % cfg.log_every == 0:
                    avg = {k: float(np.mean(v)) for k, v in running.items()}
                    avg["lr"] = lr_at(self.step, cfg)
                    avg["epoch"] = self.epoch
                    self.logger.log(self.step, "train", avg)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in avg.items() if k in ("loss", "lr")})
                    running = {}
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    last_eval = self._evaluate()
                if cfg.sample_every and self.step % cfg.sample_every == 0:
                    self._sample()
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self.save_checkpoint()
                if cfg.max_minutes is not None and time.time() - t_start > cfg.max_minutes * 60:
                    stop_reason = "time budget"
                    break
            else:
                stop_reason = "max_epochs"
        finally:
            bar.close()
        log.info("stopping at step %d (%s)", self.step, stop_reason)
        if not last_eval or last_eval.get("step") != self.step:
            last_eval = self._evaluate()
        self.save_checkpoint()
        self.export(self.out / "last")
        self.logger.close()
        return last_eval

    def _evaluate(self) -> dict[str, float]:
        self.task.model.eval()
        with torch.no_grad():
            metrics = self.task.evaluate()
        self.task.model.train()
        if not metrics:
            return {}
        metrics = {**metrics, "step": self.step}
        self.logger.log(self.step, "eval", metrics)
        log.info("step %d eval: %s", self.step, {k: _round(v) for k, v in metrics.items()})
        score = metrics.get("score")
        if score is not None and math.isfinite(score) and score < self.best:
            self.best = score
            self.export(self.out / "best")
        return metrics

    def _sample(self) -> None:
        self.task.model.eval()
        with torch.no_grad():
            self.task.sample(self.out / "samples" / f"step_{self.step:07d}", self.step)
        self.task.model.train()

    def export(self, path: Path) -> None:
        if self.accelerator.is_main_process:
            self.task.export(path)

"""The one training loop every recipe uses.

A recipe supplies a `Task` (model, batches, loss, evaluation, export); the `Trainer` owns the rest:
accelerate (CPU, CUDA, bf16), AdamW with decay on matrices only, warmup + cosine LR, gradient
clipping, a non-finite loss/gradient guard (the step is skipped and counted; `max_bad_steps` in a row
is a TrainingError), tqdm progress, JSONL + TensorBoard logs, durable checkpoints (keep-last-N) with a
`--resume` that restores weights, optimisers, data position, schedule, best score and every RNG
(torch CPU/CUDA, numpy, Python), the best model exported as a release part, and a wall-clock budget
so CPU runs stop cleanly (with a checkpoint) when time is up.

Several processes (`accelerate launch --num_processes N ...`, or torchrun): each rank trains on every
N-th batch of the same epoch plan (`Task.shard`), gradients are averaged by DDP, logged metrics are
averaged over ranks, and rank 0 alone evaluates, samples, exports and writes checkpoints and logs;
stopping and the time-fitted schedule are rank 0's decisions, broadcast every step.
"""
from __future__ import annotations

import json
import logging
import math
import os
import random
import re
import shutil
import tempfile
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from codectts.errors import CheckpointError, ConfigError, TrainingError
from codectts.fileio import atomic_write_bytes, fsync_dir, fsync_tree, recover_stale
from codectts.parts import replace_dir

log = logging.getLogger(__name__)

CKPT_NAME = re.compile(r"^step_\d{7}$")
BEST_JSON = "best.json"  # step and score of the model in best/: a resumed run never overwrites it with a worse one
PRECISIONS = ("auto", "no", "bf16", "fp16")

__all__ = ["Task", "TrainConfig", "Trainer", "TrainingError", "adamw", "lr_at", "world_size"]


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
    keep_last: int = 2  # checkpoints kept (>= 1: they are what --resume reads); best/ and last/ are apart
    mixed_precision: str = "no"  # auto = bf16 on a CUDA device that supports it, else no
    seed: int = 0
    max_bad_steps: int = 20  # non-finite loss or gradients this many steps in a row: TrainingError
    tensorboard: bool = True
    progress: bool = True

    def __post_init__(self):
        if self.max_steps <= 0:
            raise ConfigError(f"max_steps must be positive, got {self.max_steps}")
        if self.mixed_precision not in PRECISIONS:
            raise ConfigError(f"mixed_precision must be {'|'.join(PRECISIONS)}, got {self.mixed_precision!r}")
        if self.keep_last < 1:
            raise ConfigError(f"keep_last must be >= 1 (checkpoints are what --resume continues from; best/ and "
                              f"last/ are kept apart), got {self.keep_last}")
        if self.max_bad_steps < 1:
            raise ConfigError(f"max_bad_steps must be >= 1, got {self.max_bad_steps}")
        for name in ("log_every", "eval_every", "save_every", "sample_every", "warmup_steps"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.log_every == 0:
            raise ConfigError("log_every must be >= 1")
        if self.max_minutes is not None and not self.max_minutes > 0:
            raise ConfigError(f"max_minutes must be positive, got {self.max_minutes}")


def resolve_precision(name: str) -> str:
    if name == "auto":
        return "bf16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "no"
    return name


def world_size() -> int:
    """Processes of this run as a launcher (accelerate launch, torchrun) set them up; 1 when run directly."""
    return int(os.environ.get("WORLD_SIZE", "1"))


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
    multi_process: bool = True  # False: the recipe refuses to run in several processes
    rank: int = 0  # set by the Trainer
    world: int = 1

    def configure_optimizers(self, cfg: TrainConfig) -> list[torch.optim.Optimizer]:
        return [adamw(self.model, cfg)]

    def train_batches(self, epoch: int) -> Iterable[Any]:
        """The epoch's batches: a pure function of (seed, epoch), so a resumed run replays it; pass the plan
        (a list of cheap batch descriptions) through `self.shard` so each process gets its share."""
        raise NotImplementedError

    def shard(self, plan: list) -> list:
        """This process's share of an epoch plan: every world-th item from its rank, the same count on every
        rank (a remainder is dropped, or the ranks would wait on each other at the end of the epoch)."""
        if self.world == 1:
            return plan
        return plan[self.rank:len(plan) - len(plan) % self.world:self.world]

    def loss(self, batch: Any) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def train_step(self, batch: Any, trainer: Trainer) -> dict[str, float]:
        opt = trainer.optimizers[0]
        with trainer.accelerator.autocast():
            loss, metrics = self.loss(batch)
        norm = trainer.optimize(opt, loss, self.model.parameters())
        if norm is None:
            return {"loss": float("nan"), "grad_norm": float("nan")}
        return {"loss": float(loss.detach()), "grad_norm": norm, **metrics}

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
    """log.jsonl (+ TensorBoard) written by the main process; steps only move forward per kind, so a
    resumed run never writes a (step, kind) twice."""

    def __init__(self, out_dir: Path, tensorboard: bool, enabled: bool = True):
        self.path = out_dir / "log.jsonl"
        self.enabled, self.tensorboard = enabled, tensorboard and enabled
        self.tb = None
        self.purge_step: int | None = None
        self.last: dict[str, int] = {}

    def truncate(self, step: int) -> int:
        """Drop records after `step` (written after the checkpoint a run resumes from); returns how many."""
        self.purge_step = step + 1
        if not self.enabled or not self.path.exists():
            return 0
        keep, dropped = [], 0
        for line in self.path.read_text(encoding="utf-8").splitlines():
            try:
                rec = json.loads(line)
            except json.JSONDecodeError:  # a line cut by a kill
                dropped += 1
                continue
            if rec.get("step", 0) > step:
                dropped += 1
                continue
            keep.append(line)
            self.last[rec.get("kind", "")] = max(self.last.get(rec.get("kind", ""), -1), rec.get("step", 0))
        if dropped:
            atomic_write_bytes(self.path, "".join(f"{line}\n" for line in keep).encode("utf-8"))
        return dropped

    def _writer(self):
        if self.tb is None and self.tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.tb = SummaryWriter(str(self.path.parent / "tensorboard"), purge_step=self.purge_step)
            except ImportError:
                log.info("tensorboard not installed: logging to %s only", self.path)
                self.tensorboard = False
        return self.tb

    def log(self, step: int, kind: str, metrics: dict[str, float]) -> None:
        if not self.enabled or step <= self.last.get(kind, -1):
            return
        self.last[kind] = step
        rec = {"step": step, "kind": kind, "time": round(time.time(), 2), **{k: _round(v) for k, v in metrics.items()}}
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec) + "\n")
        if (tb := self._writer()) is not None:
            for k, v in metrics.items():
                if isinstance(v, (int, float)) and math.isfinite(v):
                    tb.add_scalar(f"{kind}/{k}", v, step)

    def close(self):
        if self.tb is not None:
            self.tb.close()
            self.tb = None


def _round(v):
    return round(v, 6) if isinstance(v, float) else v


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)


def rng_state() -> dict:
    """Every RNG a step may draw from, in types `torch.load(weights_only=True)` reads back."""
    _, keys, pos, has_gauss, gauss = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = {"torch": torch.get_rng_state(),
             "numpy": {"keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos), "has_gauss": int(has_gauss),
                       "gauss": float(gauss)},
             "python": [version, list(internal), gauss_next]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    n = state["numpy"]
    np.random.set_state(("MT19937", n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    version, internal, gauss_next = state["python"]
    random.setstate((version, tuple(internal), gauss_next))
    if "cuda" in state and torch.cuda.is_available():
        if len(state["cuda"]) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(state["cuda"])
        else:
            log.warning("checkpoint has CUDA RNG states for %d devices, this machine %d: CUDA RNG not restored",
                        len(state["cuda"]), torch.cuda.device_count())


def check_run_folder(out_dir: str | Path, resume: bool) -> None:
    """A fresh run must not write into a folder that holds another run's checkpoints (its best/ could be
    overwritten by a worse model and its log mixed with this one's)."""
    ckpts = checkpoints(Path(out_dir) / "checkpoints")
    if ckpts and not resume:
        raise ConfigError(f"{out_dir} holds a run (checkpoints up to {ckpts[-1].name}): pass --resume to continue "
                          f"it, or choose another --out")


def checkpoints(ckpt_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    if not ckpt_dir.is_dir():
        return []
    return sorted(p for p in ckpt_dir.iterdir() if CKPT_NAME.match(p.name) and (p / "state.pt").exists())


class Trainer:
    def __init__(self, task: Task, cfg: TrainConfig, run_config: dict | None = None):
        from accelerate import Accelerator

        self.task, self.cfg = task, cfg
        self.out = Path(cfg.out_dir)
        self.out.mkdir(parents=True, exist_ok=True)
        self.accelerator = Accelerator(mixed_precision=resolve_precision(cfg.mixed_precision),
                                       cpu=not torch.cuda.is_available())
        acc = self.accelerator
        self.rank, self.world, self.main = acc.process_index, acc.num_processes, acc.is_main_process
        if self.world > 1 and not task.multi_process:
            raise ConfigError(f"{type(task).__name__} trains in one process only (got {self.world})")
        task.rank, task.world = self.rank, self.world
        seed_everything(cfg.seed + self.rank)
        self.optimizers = task.configure_optimizers(cfg)
        prepared = acc.prepare(task.model, *self.optimizers)
        task.model, self.optimizers = prepared[0], list(prepared[1:])
        self.step, self.epoch, self.batch_in_epoch = 0, 0, 0
        self.best: float = float("inf")
        self.bad_steps = 0  # non-finite steps in a row
        self.skipped_steps = 0  # non-finite steps in the whole run
        self.resumed = False
        self.schedule_fitted = False
        self.step_cap = cfg.max_steps  # a time-fitted schedule never runs longer than this
        self.run_config = {"train": asdict(cfg), **(run_config or {})}
        self.logger = JsonlLogger(self.out, cfg.tensorboard, enabled=self.main)
        if self.main:
            for done in recover_stale(self.out) + recover_stale(self.ckpt_dir):
                log.warning("%s: %s (left by a killed run)", self.out, done)

    # ---- processes ---------------------------------------------------------------------
    def agree(self, obj: Any) -> Any:
        """Rank 0's value of `obj` on every rank."""
        if self.world == 1:
            return obj
        from accelerate.utils import broadcast_object_list

        return broadcast_object_list([obj], from_process=0)[0]

    def all_finite(self, t: torch.Tensor) -> bool:
        """True when `t` is finite on every rank (all skip the step together, or none does)."""
        ok = bool(torch.isfinite(t.detach()).all())
        if self.world == 1:
            return ok
        flag = torch.tensor([1.0 if ok else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, "sum").item() == self.world)

    def optimize(self, opt: torch.optim.Optimizer, loss: torch.Tensor,
                 params: Iterable[torch.nn.Parameter]) -> float | None:
        """One optimizer step on `loss`: the gradient norm, or None (and no step) when the loss or the
        gradients are not finite, which the loop counts as a skipped step."""
        if not self.all_finite(loss):
            return None
        opt.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        norm = self.clip_and_check(params)
        if norm is None:
            opt.zero_grad(set_to_none=True)
            return None
        opt.step()
        return norm

    def clip_and_check(self, params: Iterable[torch.nn.Parameter]) -> float | None:
        """Clip the (already averaged) gradients to grad_clip; None when their norm is not finite and no fp16
        loss scaler will skip the step itself (the caller must then not step)."""
        norm = float(self.accelerator.clip_grad_norm_(params, self.cfg.grad_clip or float("inf")))
        if not math.isfinite(norm) and self.accelerator.scaler is None:
            return None
        return norm

    def _mean_over_ranks(self, metrics: dict[str, float]) -> dict[str, float]:
        if self.world == 1:
            return metrics
        from accelerate.utils import gather_object

        sums: dict[str, list[float]] = {}
        for m in gather_object([metrics]):
            for k, v in m.items():
                sums.setdefault(k, []).append(v)
        return {k: float(np.mean(v)) for k, v in sums.items()}

    @contextmanager
    def _plain_model(self):
        """The task sees its unwrapped module (no DDP collectives) while one rank evaluates, samples or exports."""
        wrapped = self.task.model
        self.task.model = self.accelerator.unwrap_model(wrapped)
        try:
            yield
        finally:
            self.task.model = wrapped

    # ---- checkpoints -------------------------------------------------------------------
    @property
    def ckpt_dir(self) -> Path:
        return self.out / "checkpoints"

    def save_checkpoint(self) -> Path:
        """checkpoints/step_XXXXXXX/{state.pt, run.json}: written to a temp dir, flushed, renamed (rank 0)."""
        rngs = [rng_state()]
        if self.world > 1:
            from accelerate.utils import gather_object

            rngs = gather_object(rngs)
        final = self.ckpt_dir / f"step_{self.step:07d}"
        if self.main:
            self._write_checkpoint(final, rngs)
        self.accelerator.wait_for_everyone()
        return final

    def _write_checkpoint(self, final: Path, rngs: list[dict]) -> None:
        self.ckpt_dir.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(dir=self.ckpt_dir, prefix=f".tmp-{os.getpid()}-"))
        try:
            state = {
                "model": self.accelerator.unwrap_model(self.task.model).state_dict(),
                "optimizers": [o.state_dict() for o in self.optimizers],
                "step": self.step,
                "epoch": self.epoch,
                "batch_in_epoch": self.batch_in_epoch,
                "best": self.best,
                "skipped_steps": self.skipped_steps,
                "extra": self.task.state_dict_extra(),
                "max_steps": self.cfg.max_steps,
                "schedule_fitted": self.schedule_fitted,
                "rng": rngs,
            }
            torch.save(state, tmp / "state.pt")
            (tmp / "run.json").write_text(json.dumps(self.run_config, indent=1, default=str))
            fsync_tree(tmp)
            replace_dir(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        for old in checkpoints(self.ckpt_dir)[:-self.cfg.keep_last]:  # `final` is the newest
            shutil.rmtree(old, ignore_errors=True)
        fsync_dir(self.ckpt_dir)

    def latest_checkpoint(self) -> Path | None:
        ckpts = checkpoints(self.ckpt_dir)
        return ckpts[-1] if ckpts else None

    def _read_state(self, path: Path) -> dict:
        try:
            state = torch.load(path / "state.pt", map_location="cpu", weights_only=True)
        except Exception as e:  # torch raises many types for a truncated or garbled file
            raise CheckpointError(f"{path}: unreadable checkpoint ({str(e)[:200]})") from None
        keys = set(state) if isinstance(state, dict) else set()
        missing = {"model", "optimizers", "step", "epoch", "best", "rng"} - keys
        if missing:
            raise CheckpointError(f"{path}: incomplete checkpoint (no {sorted(missing)})")
        return state

    def resume(self, path: Path | None = None) -> bool:
        """Restore the newest readable checkpoint (or `path`); a corrupt newest one is set aside as
        `step_X.corrupt` with a warning and the one before is used (one that does not fit the model is a
        CheckpointError at once: the older ones would not fit either). False when there is none."""
        candidates = [Path(path)] if path is not None else checkpoints(self.ckpt_dir)[::-1]
        if not candidates:
            log.info("no checkpoint in %s: starting fresh", self.ckpt_dir)
            self.resumed = True
            return False
        for i, p in enumerate(candidates):
            try:
                state = self._read_state(p)
            except CheckpointError as e:
                if path is not None or i == len(candidates) - 1:
                    raise
                log.warning("%s; falling back to %s", e, candidates[i + 1].name)
                if self.main:
                    os.replace(p, p.with_name(p.name + ".corrupt"))
                continue
            self._restore(p, state)
            return True
        return False  # unreachable: the last candidate raises

    def _restore(self, path: Path, state: dict) -> None:
        model = self.accelerator.unwrap_model(self.task.model)
        try:
            model.load_state_dict(state["model"])
        except RuntimeError as e:
            raise CheckpointError(f"{path}: checkpoint does not match this model's config ({str(e)[:200]})") from None
        if len(state["optimizers"]) != len(self.optimizers):
            raise CheckpointError(f"{path}: {len(state['optimizers'])} optimizer state(s), this task has "
                                  f"{len(self.optimizers)}")
        try:
            for opt, s in zip(self.optimizers, state["optimizers"], strict=True):
                opt.load_state_dict(s)
        except (ValueError, KeyError) as e:
            raise CheckpointError(f"{path}: optimizer state does not match this model ({e})") from None
        self.step, self.epoch = state["step"], state["epoch"]
        self.batch_in_epoch = state.get("batch_in_epoch", 0)
        self.skipped_steps = state.get("skipped_steps", 0)
        self.best = min(state["best"], self._best_exported())
        self.task.load_state_extra(state.get("extra", {}))
        if state.get("schedule_fitted"):  # keep the shortened cosine the run was following
            self.cfg.max_steps = min(self.cfg.max_steps, state["max_steps"])
            self.schedule_fitted = True
            log.info("the resumed run's learning-rate schedule was fitted to its time budget and ends at "
                     "step %d; to train longer, start a new run initialised from its best part (--init-from)",
                     self.cfg.max_steps)
        rngs = state["rng"]
        if isinstance(rngs, list):
            set_rng_state(rngs[self.rank] if self.rank < len(rngs) else rngs[0])
        else:  # checkpoints before 0.2 kept torch's CPU state only in full
            torch.set_rng_state(rngs["torch"])
        dropped = self.logger.truncate(self.step)
        self.resumed = True
        log.info("resumed from %s (step %d, epoch %d, best %.4g%s)", path, self.step, self.epoch, self.best,
                 f"; {dropped} log line(s) after it dropped" if dropped else "")

    def _best_exported(self) -> float:
        try:
            return float(json.loads((self.out / BEST_JSON).read_text(encoding="utf-8"))["score"])
        except (OSError, ValueError, KeyError, TypeError):
            return float("inf")

    # ---- the loop ----------------------------------------------------------------------
    def _batches(self) -> Iterator[Any]:
        while self.cfg.max_epochs is None or self.epoch < self.cfg.max_epochs:
            skip = self.batch_in_epoch
            n = 0
            for i, batch in enumerate(self.task.train_batches(self.epoch)):
                n += 1
                if i < skip:
                    continue  # resuming mid-epoch: same order (sampler seeded by epoch), skip what was done
                self.batch_in_epoch = i + 1
                yield batch
            if n == 0:
                raise TrainingError(f"epoch {self.epoch} has no batches (too little data for one batch"
                                    f"{' per process' if self.world > 1 else ''})")
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
        if not self.resumed:
            check_run_folder(self.out, resume=False)
        if self.step == 0:
            self.logger.truncate(0)  # a run killed before its first checkpoint left lines nothing continues
        t_start = time.time()
        last_eval: dict[str, float] = {}
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.step,
            desc=self.out.name,
            unit="step",
            disable=not cfg.progress or not self.main,
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
                    self._bad_step()
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
                out_of_time = cfg.max_minutes is not None and time.time() - t_start > cfg.max_minutes * 60
                if self.world > 1:  # rank 0 decides, or ranks would stop at different steps and wait forever
                    old = cfg.max_steps
                    out_of_time, cfg.max_steps, self.schedule_fitted = self.agree(
                        (out_of_time, cfg.max_steps, self.schedule_fitted))
                    changed = changed or cfg.max_steps != old
                if changed:
                    bar.total = cfg.max_steps
                    bar.refresh()
                for k, v in metrics.items():
                    running.setdefault(k, []).append(v)
                if self.step % cfg.log_every == 0:
                    avg = self._mean_over_ranks({k: float(np.mean(v)) for k, v in running.items()})
                    avg["lr"] = lr_at(self.step, cfg)
                    avg["epoch"] = self.epoch
                    if self.skipped_steps:
                        avg["skipped_steps"] = self.skipped_steps
                    self.logger.log(self.step, "train", avg)
                    bar.set_postfix({k: f"{v:.3g}" for k, v in avg.items() if k in ("loss", "lr")})
                    running = {}
                if cfg.eval_every and self.step % cfg.eval_every == 0:
                    last_eval = self._evaluate()
                if cfg.sample_every and self.step % cfg.sample_every == 0:
                    self._sample()
                if cfg.save_every and self.step % cfg.save_every == 0:
                    self.save_checkpoint()
                if out_of_time:
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

    def _bad_step(self) -> None:
        self.bad_steps += 1
        self.skipped_steps += 1
        log.warning("non-finite loss or gradients at step %d (%d in a row, %d in this run): step skipped",
                    self.step, self.bad_steps, self.skipped_steps)
        if self.bad_steps >= self.cfg.max_bad_steps:
            raise TrainingError(f"loss or gradients were non-finite for {self.bad_steps} steps in a row at step "
                                f"{self.step} (lower --lr, check the data, or try --precision no); last good "
                                f"checkpoint: {self.latest_checkpoint()}")

    def _evaluate(self) -> dict[str, float]:
        metrics: dict[str, float] = {}
        if self.main:
            self.task.model.eval()
            with torch.no_grad(), self._plain_model():
                metrics = self.task.evaluate()
            self.task.model.train()
        metrics = self.agree(metrics)
        if not metrics:
            return {}
        metrics = {**metrics, "step": self.step}
        self.logger.log(self.step, "eval", metrics)
        if self.main:
            log.info("step %d eval: %s", self.step, {k: _round(v) for k, v in metrics.items()})
        score = metrics.get("score")
        if score is not None and math.isfinite(score) and score < self.best:
            self.best = score
            self.export(self.out / "best")
            if self.main:
                atomic_write_bytes(self.out / BEST_JSON, json.dumps({"step": self.step, "score": score}).encode())
        return metrics

    def _sample(self) -> None:
        if not self.main:
            return
        self.task.model.eval()
        with torch.no_grad(), self._plain_model():
            self.task.sample(self.out / "samples" / f"step_{self.step:07d}", self.step)
        self.task.model.train()

    def export(self, path: Path) -> None:
        if self.main:
            with self._plain_model():
                self.task.export(path)

"""`codectts train ...`: one sub-command per recipe, imported only when that sub-command runs.

Each recipe module defines `register(app: typer.Typer)` adding its command with `recipe_command`,
which gives every recipe the same run flags (`RunOptions`: --out, --resume, --max-steps,
--max-minutes, --lr, --precision, ...), declared once here; a recipe declares only its own flags and
its defaults for the shared ones. The inputs have one name each: `--codes` is a code cache
(`codectts codes extract`), `--data` a corpus folder (audio + manifest). Recipes import torch, so the
group resolves them lazily and `codectts --help` stays instant (this module imports no torch).
"""
from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from codectts.cli_util import optional_module

RECIPES = {"codec": "codectts.train.codec", "vocoder": "codectts.train.vocoder", "talker": "codectts.train.talker",
           "duration": "codectts.train.duration", "trm": "codectts.train.trm", "csm": "codectts.train.csm"}

PRECISIONS = ("auto", "no", "bf16", "fp16")


@dataclass
class RunOptions:
    """The flags every recipe shares. None = the recipe's (or, for talker, the JSON config's) value."""

    out: Path | None = None
    resume: bool = False
    max_steps: int | None = None
    max_minutes: float | None = None
    lr: float | None = None
    warmup_steps: int | None = None
    weight_decay: float | None = None
    grad_clip: float | None = None
    batch_size: int | None = None
    log_every: int | None = None
    eval_every: int | None = None
    save_every: int | None = None
    sample_every: int | None = None
    keep_last: int | None = None
    precision: str | None = None
    seed: int | None = None
    threads: int | None = None
    progress: bool = True

    def train_config(self, **computed: Any):
        """A TrainConfig from these flags; `computed` gives what the recipe works out itself (e.g. max_steps
        from epochs); flags left at None take TrainConfig's defaults."""
        from codectts.train.loop import TrainConfig

        names = {f.name for f in fields(TrainConfig)}
        flags = {"out_dir": str(self.out) if self.out is not None else None, "mixed_precision": self.precision,
                 **{k: getattr(self, k) for k in ("max_steps", "max_minutes", "lr", "warmup_steps", "weight_decay",
                                                   "grad_clip", "log_every", "eval_every", "save_every",
                                                   "sample_every", "keep_last", "seed", "progress")}}
        kw = {k: v for k, v in flags.items() if v is not None and k in names}
        kw.update(computed)
        return TrainConfig(**kw)

    def apply_threads(self) -> None:
        if self.threads:
            import torch

            torch.set_num_threads(self.threads)


def _shared_options() -> dict[str, tuple[Any, typer.models.OptionInfo]]:
    """name -> (type, option): the one declaration of each shared flag."""
    o = typer.Option
    return {
        "out": (Path, o("--out", help="Run folder: checkpoints/, log.jsonl, best/ and last/ parts.")),
        "resume": (bool, o("--resume", help="Continue from the run folder's last good checkpoint.")),
        "max_steps": (int | None, o("--max-steps", help="Optimizer steps.")),
        "max_minutes": (float | None, o("--max-minutes", help="Wall-clock budget; the LR schedule is fitted to "
                                                            "it and the run stops with a checkpoint.")),
        "lr": (float | None, o("--lr", help="Peak learning rate (linear warmup, then cosine).")),
        "warmup_steps": (int | None, o("--warmup-steps", help="LR warmup steps.")),
        "weight_decay": (float | None, o("--weight-decay", help="AdamW weight decay (matrices only).")),
        "grad_clip": (float | None, o("--grad-clip", help="Clip the gradient norm to this (0 = off).")),
        "batch_size": (int | None, o("--batch-size", help="Most utterances (or segments) per batch.")),
        "log_every": (int | None, o("--log-every", help="Log training metrics every N steps.")),
        "eval_every": (int | None, o("--eval-every", help="Held-out evaluation (and best/ export) every N steps.")),
        "save_every": (int | None, o("--save-every", help="Checkpoint every N steps.")),
        "sample_every": (int | None, o("--sample-every", help="Write generated samples every N steps (0 = off).")),
        "keep_last": (int | None, o("--keep-last", help="Checkpoints kept (>= 1; last/ and best/ are kept apart).")),
        "precision": (str | None, o("--precision", help="auto (bf16 on a CUDA device that has it) | no | bf16 | "
                                                        "fp16.")),
        "seed": (int | None, o("--seed", help="Seed for initialisation, batch order and sampling.")),
        "threads": (int | None, o("--threads", help="torch CPU threads.")),
        "progress": (bool, o("--progress/--no-progress", help="Show a progress bar.")),
    }


def codes_option(required: bool = True):
    """`--codes`: the one name of a code-cache input."""
    return typer.Option(... if required else None, "--codes",
                        help="Code cache folder (codectts codes extract)." +
                             ("" if required else " Default: the config's data_path."))


def data_option():
    """`--data`: the one name of a corpus input."""
    return typer.Option(..., "--data", help="Corpus folder (manifest.jsonl + dev.jsonl, or metadata.csv).")


def recipe_command(app: typer.Typer, name: str, config_file: bool = False, **defaults: Any) -> Callable:
    """Register `fn(opts: RunOptions, **own)` as `codectts train NAME` with the shared flags added.

    `defaults` sets this recipe's default for a shared flag (shown in --help); the others default to
    TrainConfig's, or with `config_file` to None (the recipe's JSON config decides)."""
    from codectts.train.loop import TrainConfig

    shared = _shared_options()
    unknown = set(defaults) - set(shared)
    if unknown:
        raise ValueError(f"not shared options: {sorted(unknown)}")
    base = RunOptions()
    if not config_file:
        loop_defaults = TrainConfig()
        defaults = {**{k: getattr(loop_defaults, k) for k in ("max_steps", "lr", "warmup_steps", "weight_decay",
                                                               "grad_clip", "log_every", "eval_every", "save_every",
                                                               "sample_every", "keep_last", "seed")},
                    "precision": loop_defaults.mixed_precision, **defaults}

    def decorate(fn: Callable) -> Callable:
        hints = typing.get_type_hints(fn)
        own = [p.replace(annotation=hints.get(p.name, p.annotation), kind=inspect.Parameter.KEYWORD_ONLY)
               for p in inspect.signature(fn).parameters.values() if p.name != "opts"]
        clash = {p.name for p in own} & set(shared)
        if clash:
            raise ValueError(f"{name}: {sorted(clash)} are shared options")
        extra = [inspect.Parameter(k, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[tp, opt],
                                   default=defaults.get(k, getattr(base, k)))
                 for k, (tp, opt) in shared.items()]

        @functools.wraps(fn)
        def command(**kw: Any) -> Any:
            opts = RunOptions(**{k: kw.pop(k) for k in shared})
            if opts.precision is not None and opts.precision not in PRECISIONS:
                from codectts.errors import ConfigError

                raise ConfigError(f"--precision must be one of {'|'.join(PRECISIONS)}, got {opts.precision!r}")
            opts.apply_threads()
            return fn(opts, **kw)

        params = own + extra
        command.__signature__ = inspect.Signature(params)  # type: ignore[attr-defined]
        command.__annotations__ = {p.name: p.annotation for p in params}
        del command.__wrapped__  # typer must read the merged signature, not fn's
        app.command(name)(command)
        return fn

    return decorate


class LazyRecipes(TyperGroup):
    def list_commands(self, ctx) -> list[str]:
        return [n for n in RECIPES if _spec_exists(RECIPES[n])]

    def get_command(self, ctx, name: str) -> object | None:
        if name not in RECIPES or (mod := optional_module(RECIPES[name])) is None:
            return None
        sub = typer.Typer(add_completion=False)
        mod.register(sub)
        return typer.main.get_command(sub)


def _spec_exists(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def train_group() -> TyperGroup:
    return LazyRecipes(name="train", help="Train codecs, vocoders and acoustic models (shared loop and flags: "
                                          "--out, --resume, --max-minutes, checkpoints, logs).",
                       no_args_is_help=True)

"""`codectts train ...`: one sub-command per recipe, imported only when that sub-command runs.

Each recipe module defines `register(app: typer.Typer)` adding its command; recipes import torch,
so the group resolves them lazily and `codectts --help` stays instant.
"""
from __future__ import annotations

import typer
from typer.core import TyperGroup

from codectts.cli_util import optional_module

RECIPES = {"codec": "codectts.train.codec", "vocoder": "codectts.train.vocoder", "talker": "codectts.train.talker",
           "duration": "codectts.train.duration", "trm": "codectts.train.trm", "csm": "codectts.train.csm"}


class LazyRecipes(TyperGroup):
    def list_commands(self, ctx) -> list[str]:
        return [n for n in RECIPES if _spec_exists(RECIPES[n])]

    def get_command(self, ctx, name: str) -> object | None:
        if name not in RECIPES or (mod := optional_module(RECIPES[name])) is None:
            return None
        sub = typer.Typer()
        mod.register(sub)
        return typer.main.get_command(sub)


def _spec_exists(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def train_group() -> TyperGroup:
    return LazyRecipes(name="train", help="Train codecs, vocoders and acoustic models (shared loop: checkpoints, "
                                          "--resume, logs).", no_args_is_help=True)

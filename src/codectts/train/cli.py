"""`codectts train ...`: each recipe module in RECIPES defines `register(app)` adding its command."""
from __future__ import annotations

import typer

app = typer.Typer(help="Train codecs, vocoders and acoustic models (shared loop: checkpoints, --resume, logs).",
                  no_args_is_help=True)

RECIPES = ["codectts.train.codec", "codectts.train.vocoder", "codectts.train.talker", "codectts.train.duration",
           "codectts.train.trm", "codectts.train.csm"]

for _mod in RECIPES:
    from codectts.cli_util import optional_module

    if (_m := optional_module(_mod)) is not None:
        _m.register(app)

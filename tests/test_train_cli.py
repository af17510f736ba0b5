"""Every `codectts train` recipe takes the same run flags, declared once (codectts.train.cli)."""
import importlib

import pytest
import typer

from codectts.errors import ConfigError
from codectts.train.cli import RECIPES, RunOptions

SHARED = {"--out", "--resume", "--max-steps", "--max-minutes", "--lr", "--warmup-steps", "--weight-decay",
          "--grad-clip", "--batch-size", "--log-every", "--eval-every", "--save-every", "--sample-every",
          "--keep-last", "--precision", "--seed", "--threads", "--progress"}
INPUT = {"codec": "--data", "vocoder": "--data", "talker": "--codes", "duration": "--codes", "trm": "--codes",
         "csm": "--codes"}
OLD = {"--token-dir", "--data-path", "--out-dir", "--output-dir", "--minutes", "--steps", "--warmup",
       "--mixed-precision", "--eval-interval", "--save-interval", "--log-interval", "--sample-interval",
       "--max-batch-frames", "--max-samples"}


def command(name: str):
    app = typer.Typer()
    importlib.import_module(RECIPES[name]).register(app)
    return typer.main.get_command(app)


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_has_the_shared_flags_and_one_input_name(name):
    opts = {o for p in command(name).params for o in p.opts}
    assert SHARED <= opts, SHARED - opts
    assert INPUT[name] in opts and ({"--codes", "--data"} - {INPUT[name]}).isdisjoint(opts)
    assert not opts & OLD, opts & OLD


def test_run_options_make_a_train_config():
    cfg = RunOptions(out="runs/x", max_steps=7, lr=1e-3, precision="bf16", keep_last=3).train_config(max_epochs=2)
    assert (cfg.out_dir, cfg.max_steps, cfg.lr, cfg.mixed_precision, cfg.keep_last, cfg.max_epochs) == (
        "runs/x", 7, 1e-3, "bf16", 3, 2)
    assert RunOptions().train_config().lr == 3e-4  # unset flags: TrainConfig's defaults


def test_bad_shared_flag_values_are_one_line_errors(tmp_path):
    from typer.testing import CliRunner

    app = typer.Typer()
    importlib.import_module(RECIPES["duration"]).register(app)

    @app.callback()
    def _main():
        pass

    for flags, match in ((["--precision", "fp8"], "precision"), (["--keep-last", "0"], "keep_last")):
        res = CliRunner().invoke(app, ["duration", "--codes", str(tmp_path), "--out", str(tmp_path / "r"), *flags])
        assert isinstance(res.exception, ConfigError) and match in str(res.exception), res.output

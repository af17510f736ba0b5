"""`import codectts.cli` (what `codectts --help` pays for) must not import torch or numpy."""
import os
import subprocess
import sys
from pathlib import Path

SRC = str(Path(__file__).resolve().parent.parent / "src")
ENV = {**os.environ, "PYTHONPATH": SRC}  # this checkout's sources, not an installed copy


def test_importing_the_cli_loads_no_torch():
    code = ("import sys, codectts.cli; cmd = codectts.cli.command(); "
            "heavy = sorted(m for m in ('torch', 'numpy', 'accelerate') if m in sys.modules); print(heavy)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                       env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == "[]", r.stdout


def test_help_lists_every_recipe_without_importing_them():
    r = subprocess.run([sys.executable, "-m", "codectts.cli", "train", "--help"], capture_output=True, text=True,
                       timeout=120, env=ENV)
    assert r.returncode == 0, r.stderr[-2000:]
    for name in ("codec", "vocoder", "talker", "duration", "trm", "csm"):
        assert name in r.stdout


def test_every_public_name_of_a_package_exists():
    """`__all__` is a promise: a name listed but never imported breaks `from codectts.x import *`."""
    import importlib

    for pkg in ("audio", "codecs", "infer", "serve", "text", "vocoders"):
        mod = importlib.import_module(f"codectts.{pkg}")
        missing = [n for n in getattr(mod, "__all__", []) if not hasattr(mod, n)]
        assert missing == [], f"codectts.{pkg}.__all__ names missing attributes: {missing}"

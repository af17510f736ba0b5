"""`codectts` entry point: every CodecTTSError becomes one line on stderr and exit code 2, never a traceback."""
import sys

import click
import pytest

import codectts.cli as cli
from codectts import errors

SUBCLASSES = sorted(errors.CodecTTSError.__subclasses__(), key=lambda c: c.__name__)


def test_every_error_type_is_covered():
    assert {c.__name__ for c in SUBCLASSES} >= {"ConfigError", "TextError", "AudioError", "DataError",
                                                "CheckpointError", "TrainingError", "GenerationError"}


@pytest.mark.parametrize("error", [errors.CodecTTSError, *SUBCLASSES], ids=lambda c: c.__name__)
def test_error_is_one_line_and_exit_2(error, monkeypatch, capsys):
    def fail():
        raise error("voice.json: bad field\n  (details on a second line)")

    monkeypatch.setattr(cli, "command", lambda: click.Command("codectts", callback=fail))
    monkeypatch.setattr(sys, "argv", ["codectts"])
    with pytest.raises(SystemExit) as exit_info:
        cli.run()
    assert exit_info.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err == "error: voice.json: bad field (details on a second line)\n"


def test_other_exceptions_are_not_swallowed(monkeypatch):
    def fail():
        raise RuntimeError("a bug")

    monkeypatch.setattr(cli, "command", lambda: click.Command("codectts", callback=fail))
    monkeypatch.setattr(sys, "argv", ["codectts"])
    with pytest.raises(RuntimeError, match="a bug"):
        cli.run()


def test_a_real_command_error_exits_2(tmp_path, monkeypatch, capsys):
    """Through the real command tree: an unreadable --file is a TextError."""
    monkeypatch.setattr(sys, "argv", ["codectts", "say", "--file", str(tmp_path / "missing.txt"), "-o",
                                      str(tmp_path / "out.wav")])
    with pytest.raises(SystemExit) as exit_info:
        cli.run()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.txt: cannot read text" in err and err.count("\n") == 1

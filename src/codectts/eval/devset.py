"""The shipped evaluation texts: 100 dev sentences and 5 long paragraphs, written for codectts.

They are not in the training corpus (which comes from Debian's fortunes) and cover numbers, dates,
times, money, percentages, questions, exclamations, 2-3-word and 30+-word sentences. The paragraphs
(60+ words each) test long-input splitting and streaming.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from codectts.errors import ConfigError, DataError

DEV_SETS = {"sentences": "dev_sentences.txt", "paragraphs": "dev_paragraphs.txt"}


def read_lines(path: str | Path) -> list[str]:
    """Non-empty stripped lines of a UTF-8 text file (one text per line)."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise DataError(f"{path}: no such text file") from None
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 ({e})") from None
    out = [s.strip() for s in lines if s.strip()]
    if not out:
        raise DataError(f"{path}: no texts (expected one per line)")
    return out


def dev_texts(name: str = "sentences") -> list[str]:
    """A shipped text set by name: "sentences" (100) or "paragraphs" (5)."""
    if name not in DEV_SETS:
        raise ConfigError(f"unknown dev set {name!r}; choose from {sorted(DEV_SETS)}")
    return read_lines(Path(str(resources.files("codectts.eval") / "data" / DEV_SETS[name])))

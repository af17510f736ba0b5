"""Offline English sentences for a training corpus.

Source: Debian's `fortunes` and `fortunes-min` packages (BSD-style licence; fetched with
`apt-get download` and unpacked with `dpkg -x`, no system install). Records are split on `%`,
then into sentences; we keep 5-20-word sentences of plain letters and basic punctuation.
Any UTF-8 text file with one sentence per line works as well (`--text-file`).
"""
from __future__ import annotations

import hashlib
import logging
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

from codectts.errors import DataError
from codectts.text.split import split_sentences

log = logging.getLogger(__name__)

FORTUNE_PACKAGES = ("fortunes", "fortunes-min")
SKIP_FILES = {"art", "ascii-art", "definitions", "linuxcookie", "debian", "computers", "startrek", "songs-poems"}
_ALLOWED = re.compile(r"^[A-Za-z][A-Za-z ,.'?!;:\-]*[.?!]$")
_CACHE = Path.home() / ".cache" / "codectts" / "fortunes"


def fetch_fortunes(cache: Path = _CACHE) -> Path:
    """Download and unpack the fortune files once; returns the folder holding them."""
    target = cache / "usr" / "share" / "games" / "fortunes"
    if target.is_dir() and any(target.iterdir()):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        try:
            subprocess.run(["apt-get", "download", *FORTUNE_PACKAGES], cwd=tmp, check=True,
                           capture_output=True, timeout=300)
            staging = Path(tmp) / "x"
            for deb in Path(tmp).glob("*.deb"):
                subprocess.run(["dpkg", "-x", str(deb), str(staging)], check=True, capture_output=True)
        except (OSError, subprocess.SubprocessError) as e:
            raise DataError("could not fetch Debian's fortunes packages (needs apt-get and dpkg, and Debian's "
                            f"archive reachable); pass --text-file with one sentence per line instead ({e})") from None
        if target.exists():
            shutil.rmtree(cache / "usr")
        shutil.move(str(staging / "usr"), str(cache / "usr"))
    return target


def clean_sentence(s: str, min_words: int = 5, max_words: int = 20) -> str | None:
    s = re.sub(r"\s+", " ", s).strip().strip('"').strip()
    s = re.sub(r"^[-\u2014\s]+", "", s)
    if not _ALLOWED.match(s) or "--" in s or " -" in s or "- " in s:
        return None
    words = s.split()
    if not (min_words <= len(words) <= max_words):
        return None
    if sum(w.isupper() and len(w) > 1 for w in words) > 1:  # shouting, acronyms, headers
        return None
    return s


def fortune_sentences(folder: Path) -> list[str]:
    out: list[str] = []
    for f in sorted(folder.iterdir()):
        if f.suffix or f.name in SKIP_FILES or not f.is_file():
            continue
        raw = f.read_bytes().decode("utf-8", errors="replace")
        for record in raw.split("\n%\n"):
            lines = [ln for ln in record.splitlines() if not ln.strip().startswith(("--", "\t\t--"))]
            for s in split_sentences(" ".join(lines), max_chars=10_000):
                c = clean_sentence(s)
                if c:
                    out.append(c)
    return out


def load_sentences(text_file: str | Path | None = None, seed: int = 0) -> list[str]:
    """Unique sentences in a deterministic order (shuffled by `seed`)."""
    if text_file is not None:
        p = Path(text_file)
        if not p.exists():
            raise DataError(f"{p}: no such text file")
        try:
            lines = p.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError as e:
            raise DataError(f"{p}: not UTF-8 ({e})") from None
        sents = [ln.strip() for ln in lines if ln.strip() and not ln.startswith("#")]
    else:
        sents = fortune_sentences(fetch_fortunes())
    seen, uniq = set(), []
    for s in sents:
        key = re.sub(r"[^a-z]", "", s.lower())
        if key and key not in seen:
            seen.add(key)
            uniq.append(s)
    uniq.sort(key=lambda s: hashlib.sha1(f"{seed}:{s}".encode()).hexdigest())
    return uniq

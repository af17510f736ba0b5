"""Offline English sentences for a training corpus.

Source: Debian's `fortunes` and `fortunes-min` packages (BSD-style licence; fetched with
`apt-get download` and unpacked with `dpkg -x`, no system install). Records are split on `%`,
then into sentences; we keep 5-20-word sentences of plain letters and basic punctuation.
Any UTF-8 text file with one sentence per line works as well (`--text-file`).

Extra training text (`--extra-text wordnet`): the usage examples of Debian's `wordnet-base`
(WordNet 3.0, Princeton's permissive licence), everyday sentences and phrases of 3-20 words with
questions, numbers and names, which the aphorisms of the fortunes lack. Extra text only ever goes to
the training split, so the dev set stays the primary source's first sentences.
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
WORDNET_PACKAGES = ("wordnet-base",)
SKIP_FILES = {"art", "ascii-art", "definitions", "linuxcookie", "debian", "computers", "startrek", "songs-poems"}
_ALLOWED = re.compile(r"^[A-Za-z][A-Za-z ,.'?!;:\-]*[.?!]$")
_ALLOWED_DIGITS = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ,.'?!;:\-]*[.?!]$")
_CACHE_ROOT = Path.home() / ".cache" / "codectts"
_CACHE = _CACHE_ROOT / "fortunes"


def fetch_fortunes(cache: Path = _CACHE) -> Path:
    """Download and unpack the fortune files once; returns the folder holding them."""
    return fetch_debian(FORTUNE_PACKAGES, cache, Path("usr/share/games/fortunes"))


def fetch_debian(packages: tuple[str, ...], cache: Path, subdir: Path) -> Path:
    """Download Debian packages with `apt-get download`, unpack them under `cache` with `dpkg -x` (no
    system install) once, and return `cache/subdir`."""
    target = cache / subdir
    if target.is_dir() and any(target.iterdir()):
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        try:
            subprocess.run(["apt-get", "download", *packages], cwd=tmp, check=True,
                           capture_output=True, timeout=300)
            staging = Path(tmp) / "x"
            for deb in Path(tmp).glob("*.deb"):
                subprocess.run(["dpkg", "-x", str(deb), str(staging)], check=True, capture_output=True)
        except (OSError, subprocess.SubprocessError) as e:
            raise DataError(f"could not fetch Debian's {', '.join(packages)} (needs apt-get and dpkg, and Debian's "
                            f"archive reachable); pass a text file with one sentence per line instead ({e})") from None
        if target.exists():
            shutil.rmtree(cache / "usr")
        shutil.move(str(staging / "usr"), str(cache / "usr"))
    return target


def clean_sentence(s: str, min_words: int = 5, max_words: int = 20, digits: bool = False) -> str | None:
    s = re.sub(r"\s+", " ", s).strip().strip('"').strip()
    s = re.sub(r"^[-\u2014\s]+", "", s)
    if not (_ALLOWED_DIGITS if digits else _ALLOWED).match(s) or "--" in s or " -" in s or "- " in s:
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


def wordnet_sentences(folder: Path) -> list[str]:
    """The quoted usage examples of WordNet's data files ("he ran a mile in four minutes"), as sentences:
    first letter capitalised, a full stop added where the example has no end punctuation."""
    out: list[str] = []
    for name in ("data.noun", "data.verb", "data.adj", "data.adv"):
        f = folder / name
        if not f.is_file():
            continue
        for line in f.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("  ") or "|" not in line:  # the licence header
                continue
            for example in re.findall(r'"([^"]+)"', line.split("|", 1)[1]):
                example = example.strip().rstrip(";,:").strip()
                if not example:
                    continue
                if example[-1] not in ".?!":
                    example += "."
                c = clean_sentence(example[0].upper() + example[1:], min_words=3, digits=True)
                if c:
                    out.append(c)
    return out


EXTRA_SOURCES = {"wordnet": lambda: wordnet_sentences(
    fetch_debian(WORDNET_PACKAGES, _CACHE_ROOT / "wordnet", Path("usr/share/wordnet")))}


def load_extra_sentences(source: str, seed: int = 0, exclude: list[str] = ()) -> list[str]:
    """Extra training sentences: a named source (`wordnet`) or a UTF-8 file with one sentence per line,
    without any sentence of `exclude` (the primary source, so no dev sentence comes back in training)."""
    if source in EXTRA_SOURCES:
        sents = EXTRA_SOURCES[source]()
    else:
        sents = load_sentences(source, seed=seed)
    taken = {_key(s) for s in exclude}
    return [s for s in _unique(sents, seed) if _key(s) not in taken]


def _key(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _unique(sents: list[str], seed: int) -> list[str]:
    """First occurrence of each sentence (compared on letters and digits), sorted by a seeded hash."""
    seen, uniq = set(), []
    for s in sents:
        key = _key(s)
        if key and key not in seen:
            seen.add(key)
            uniq.append(s)
    uniq.sort(key=lambda s: hashlib.sha1(f"{seed}:{s}".encode()).hexdigest())
    return uniq


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
    return _unique(sents, seed)

"""Character and phoneme tokenizers. Ids are fixed: PAD=0, BOS=1, EOS=2 in both.

The phoneme inventory is the teacher's (Piper / espeak-ng IPA, shipped as phonemes.json), so a
model trained on teacher alignments needs no teacher at inference: our phonemizer is the same
espeak-ng build that piper-tts bundles.
"""
from __future__ import annotations

import json
import logging
import os
import threading
from functools import lru_cache
from pathlib import Path

from codectts.errors import ConfigError, TextError
from codectts.text.normalize import has_speakable, normalize_text

log = logging.getLogger(__name__)

PAD_ID, BOS_ID, EOS_ID = 0, 1, 2
PAD, BOS, EOS = "_", "^", "$"
PHONEME_INVENTORY_FILE = Path(__file__).with_name("phonemes.json")
CHAR_INVENTORY = list(" !'(),-.:;?abcdefghijklmnopqrstuvwxyz\"")


class Tokenizer:
    """symbols[i] has id i; the first three are PAD, BOS, EOS."""

    kind = "base"

    def __init__(self, symbols: list[str]):
        if not isinstance(symbols, list | tuple) or not all(isinstance(s, str) and s for s in symbols):
            raise ConfigError("tokenizer symbols must be a list of non-empty strings")
        if list(symbols[:3]) != [PAD, BOS, EOS]:
            raise ConfigError(f"tokenizer symbols must start with {[PAD, BOS, EOS]}, got {list(symbols[:3])}")
        if len(set(symbols)) != len(symbols):
            raise ConfigError("tokenizer symbols contain duplicates")
        self.symbols = list(symbols)
        self.index = {s: i for i, s in enumerate(self.symbols)}

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    def units(self, text: str) -> list[str]:
        """Text -> the unit sequence (characters or phonemes) before ids."""
        raise NotImplementedError

    def ids_from_units(self, units: list[str], add_bos_eos: bool = True) -> list[int]:
        ids, dropped = [], []
        for u in units:
            if u in self.index:
                ids.append(self.index[u])
            else:
                dropped.append(u)
        if dropped:
            log.warning(
                "dropped %d unknown %s symbol(s): %s", len(dropped), self.kind, "".join(sorted(set(dropped)))[:40]
            )
        return [BOS_ID, *ids, EOS_ID] if add_bos_eos else ids

    def encode(self, text: str, add_bos_eos: bool = True) -> list[int]:
        """Normalise, tokenize, map to ids. Raises TextError when nothing speakable remains."""
        ids = self.ids_from_units(self.units(text), add_bos_eos=False)
        if not any(self.symbols[i].isalpha() for i in ids):
            raise TextError(f"text has nothing to speak after normalisation: {text[:60]!r}")
        return [BOS_ID, *ids, EOS_ID] if add_bos_eos else ids

    def decode(self, ids: list[int]) -> str:
        return "".join(self.symbols[i] for i in ids if i not in (PAD_ID, BOS_ID, EOS_ID))

    def to_dict(self) -> dict:
        return {"kind": self.kind, "symbols": self.symbols}

    def save(self, path: str | os.PathLike) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")


class CharTokenizer(Tokenizer):
    """Lower-case characters of normalised text; anything outside the inventory is dropped with a warning."""

    kind = "char"

    def __init__(self, symbols: list[str] | None = None):
        super().__init__(symbols or [PAD, BOS, EOS, *CHAR_INVENTORY])

    def units(self, text: str) -> list[str]:
        return list(normalize_text(text).lower())


_ESPEAK_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _espeak():
    try:
        import piper
        from piper.phonemize_espeak import EspeakPhonemizer
    except ImportError as e:  # pragma: no cover - piper-tts is a runtime dependency
        raise TextError("phonemes need piper-tts (pip install piper-tts)") from e
    return EspeakPhonemizer(os.path.join(os.path.dirname(piper.__file__), "espeak-ng-data"))


def phonemize(text: str, voice: str = "en-us") -> list[list[str]]:
    """Normalised text -> one list of IPA phonemes per sentence, exactly as the teacher sees them."""
    if not has_speakable(text):
        return []
    with _ESPEAK_LOCK:  # espeak-ng keeps global state
        espeak = _espeak()
        try:
            sentences = espeak.phonemize(voice, text)
        except RuntimeError as e:  # piper's bridge: RuntimeError("Failed to set voice: ...")
            if "voice" in str(e):
                raise ConfigError(f"espeak-ng has no voice {voice!r} ({e})") from None
            raise TextError(f"espeak-ng cannot read this text ({e})") from None
    return [s for s in sentences if s]


class PhonemeTokenizer(Tokenizer):
    """espeak-ng IPA phonemes (piper-tts's bundled espeak), one id per phoneme; sentences joined by a space."""

    kind = "phoneme"

    def __init__(self, symbols: list[str] | None = None, voice: str = "en-us"):
        if symbols is None:
            symbols = json.loads(PHONEME_INVENTORY_FILE.read_text(encoding="utf-8"))["symbols"]
        super().__init__(symbols)
        self.voice = voice

    def units(self, text: str) -> list[str]:
        out: list[str] = []
        for sent in phonemize(normalize_text(text), self.voice):
            if out:
                out.append(" ")
            out.extend(sent)
        return out

    def to_dict(self) -> dict:
        return {**super().to_dict(), "voice": self.voice}


def tokenizer_from_dict(d: dict) -> Tokenizer:
    """Inverse of `Tokenizer.to_dict`; a malformed dict (hand-edited tokenizer.json) is a ConfigError."""
    if not isinstance(d, dict):
        raise ConfigError(f"a tokenizer must be an object with 'kind' and 'symbols', got {type(d).__name__}")
    kind = d.get("kind")
    if kind not in ("char", "phoneme"):
        raise ConfigError(f"unknown tokenizer kind {kind!r} (char or phoneme)")
    if "symbols" not in d:
        raise ConfigError("tokenizer lacks 'symbols'")
    if kind == "char":
        return CharTokenizer(d["symbols"])
    voice = d.get("voice", "en-us")
    if not isinstance(voice, str) or not voice.replace("-", "").isalnum():
        raise ConfigError(f"tokenizer 'voice' must be an espeak-ng voice name such as 'en-us', got {voice!r}")
    return PhonemeTokenizer(d["symbols"], voice)


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    try:
        d = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: cannot read tokenizer ({e})") from None
    try:
        return tokenizer_from_dict(d)
    except ConfigError as e:
        raise ConfigError(f"{path}: {e}") from None

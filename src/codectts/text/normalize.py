"""English text normalisation: what the user typed -> words a voice (and an ASR scorer) can read.

Unicode NFKC, control characters removed, currency, percentages, ordinals, years, decimals and
plain numbers spelled out with num2words, common abbreviations expanded, invented words that
espeak-ng cannot read respelled (LEXICON), whitespace collapsed.
The same function normalises ASR transcripts before WER, so "42" and "forty-two" score equal.
"""
from __future__ import annotations

import re
import unicodedata


def num2words(n, **kw) -> str:
    """Lazy num2words: tokenizers import this module on GPU boxes that lack the package."""
    from num2words import num2words as n2w

    return n2w(n, **kw)


ABBREVIATIONS = {
    "mr": "mister", "mrs": "missus", "ms": "miss", "dr": "doctor", "st": "saint", "prof": "professor",
    "jr": "junior", "sr": "senior", "co": "company", "ltd": "limited", "inc": "incorporated",
    "vs": "versus", "etc": "et cetera", "mt": "mount", "capt": "captain", "gen": "general",
    "lt": "lieutenant", "sgt": "sergeant", "col": "colonel", "gov": "governor", "no": "number",
}
# Invented words (the project's own name, ...) respelled so espeak-ng reads them: it says "codectts" as
# "kˈoʊdkts" but "codec TTS" as "codec tee tee ess". Whole words, any case.
LEXICON = {"codectts": "codec TTS"}
_LEXICON_RE = re.compile(r"\b(" + "|".join(LEXICON) + r")\b", re.IGNORECASE)
_ABBREV_RE = re.compile(r"\b(" + "|".join(ABBREVIATIONS) + r")\.(?=\s|$)", re.IGNORECASE)
_CURRENCY = {"$": ("dollar", "dollars", "cent", "cents"), "£": ("pound", "pounds", "penny", "pence"),
             "€": ("euro", "euros", "cent", "cents")}
_SCALED_CURRENCY_RE = re.compile(
    r"([$£€])\s?(\d[\d,]*(?:\.\d+)?)\s+(thousand|million|billion|trillion)\b", re.IGNORECASE
)
_CURRENCY_RE = re.compile(r"([$£€])\s?(\d[\d,]*)(?:\.(\d{1,2}))?\b")
_PERCENT_RE = re.compile(r"(\d[\d,]*(?:\.\d+)?)\s?%")
_ORDINAL_RE = re.compile(r"\b(\d[\d,]*)(st|nd|rd|th)\b", re.IGNORECASE)
_YEAR_RE = re.compile(r"\b(1[1-9]\d\d|20\d\d)(s?)\b")
_DECIMAL_RE = re.compile(r"\b(\d[\d,]*)\.(\d+)\b")
_NUMBER_RE = re.compile(r"\b\d[\d,]*\b")
_TIME_RE = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_SYMBOLS = {"&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "#": " number "}


def _int_words(s: str) -> str:
    return num2words(int(s.replace(",", "")))


def _currency(m: re.Match) -> str:
    one, many, sub_one, sub_many = _CURRENCY[m.group(1)]
    whole = int(m.group(2).replace(",", ""))
    words = f"{num2words(whole)} {one if whole == 1 else many}"
    if m.group(3):
        cents = int(m.group(3).ljust(2, "0"))
        if cents:
            words += f" and {num2words(cents)} {sub_one if cents == 1 else sub_many}"
    return f" {words} "


def _year(m: re.Match) -> str:
    y = int(m.group(1))
    words = num2words(y, to="year")
    if m.group(2):  # 1990s -> nineteen nineties
        words = re.sub(r"y$", "ies", words) if words.endswith("y") else words + "s"
    return words


def _time(m: re.Match) -> str:
    h, mins = int(m.group(1)), int(m.group(2))
    if h > 24 or mins > 59:
        return m.group(0)
    if mins == 0:
        return f"{num2words(h)} o'clock"
    return f"{num2words(h)} {'oh ' + num2words(mins) if mins < 10 else num2words(mins)}"


def strip_controls(text: str) -> str:
    """NFKC, then drop control/format characters and pictographs (emoji); newlines/tabs become spaces."""
    text = unicodedata.normalize("NFKC", text)
    return "".join(
        " " if ch in "\n\r\t" else ch
        for ch in text
        if ch in "\n\r\t" or unicodedata.category(ch)[0] != "C" and unicodedata.category(ch) != "So"
    )


def normalize_text(text: str) -> str:
    """Normalise English text for synthesis. May return "" (callers decide if that is an error)."""
    text = strip_controls(text)
    text = text.replace("\u2019", "'").replace("\u2018", "'").replace("\u201c", '"').replace("\u201d", '"')
    text = text.replace("\u2014", ", ").replace("\u2013", " to ").replace("\u2026", "...")
    text = _ABBREV_RE.sub(lambda m: ABBREVIATIONS[m.group(1).lower()], text)
    text = _LEXICON_RE.sub(lambda m: LEXICON[m.group(1).lower()], text)
    text = _SCALED_CURRENCY_RE.sub(
        lambda m: f" {_number_words(m.group(2))} {m.group(3).lower()} {_CURRENCY[m.group(1)][1]} ", text
    )
    text = _CURRENCY_RE.sub(_currency, text)
    text = _PERCENT_RE.sub(lambda m: f" {_number_words(m.group(1))} percent ", text)
    text = _TIME_RE.sub(_time, text)
    text = _ORDINAL_RE.sub(lambda m: num2words(int(m.group(1).replace(",", "")), to="ordinal"), text)
    text = _YEAR_RE.sub(_year, text)
    text = _DECIMAL_RE.sub(lambda m: _number_words(m.group(0)), text)
    text = _NUMBER_RE.sub(lambda m: _int_words(m.group(0)), text)
    for sym, word in _SYMBOLS.items():
        text = text.replace(sym, word)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    return text


def _number_words(s: str) -> str:
    s = s.replace(",", "")
    if "." in s:
        whole, frac = s.split(".", 1)
        return f"{num2words(int(whole or 0))} point {' '.join(num2words(int(d)) for d in frac)}"
    return num2words(int(s))


def has_speakable(text: str) -> bool:
    """True when the text holds at least one letter of any script."""
    return any(unicodedata.category(ch).startswith("L") for ch in text)


_WER_TIME_RE = re.compile(r"(?<![$£€\d.,])\b(\d{1,2})\.(\d{2})\b(?![.,]?\d)")


def normalize_for_wer(text: str) -> str:
    """Lower-case word string for scoring ASR: numbers spelled, punctuation and hyphens removed.

    Whisper writes clock times as "9.30"; both sides read h.mm as a time so "9:30" and "9.30" agree.
    """
    text = normalize_text(_WER_TIME_RE.sub(r"\1:\2", text)).lower().replace("-", " ")
    text = re.sub(r"[^\w' ]+", " ", text)
    text = re.sub(r"(?<!\w)'|'(?!\w)", " ", text)
    return re.sub(r"\s+", " ", text).strip()

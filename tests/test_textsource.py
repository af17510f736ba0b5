"""Text sources for corpora: sentence cleaning, WordNet examples, extra text kept out of dev."""
from pathlib import Path

from codectts.data.corpus import plan_jobs
from codectts.data.textsource import (
    clean_sentence,
    load_extra_sentences,
    load_sentences,
    wordnet_sentences,
)

WORDNET_DATA = "\n".join([
    '  1 This software and database is being provided to you, the LICENSEE, by Princeton "AS IS"',
    '00002137 03 n 02 abstraction 0 | a general concept; "how big is that part compared to the whole?"; '
    '"the team is a unit"',
    '00002452 03 n 01 thing 0 | a separate entity; "he ran a mile in 4 minutes"; '
    '"it was full of rackets, balls and other objects"; "too short"',
    '00002684 03 n 01 object 0 | a tangible entity; "the DNA of the FBI and the CIA"; "he wrote \u00e9clair"',
])


def test_clean_sentence_keeps_plain_sentences_and_digits_only_when_asked():
    assert clean_sentence("  The cat sat on the mat. ") == "The cat sat on the mat."
    assert clean_sentence("Too short.") is None
    assert clean_sentence("He ran 4 miles before noon.") is None
    assert clean_sentence("He ran 4 miles before noon.", digits=True) == "He ran 4 miles before noon."
    assert clean_sentence("No end punctuation here at all") is None


def test_wordnet_examples_become_sentences(tmp_path: Path):
    (tmp_path / "data.noun").write_text(WORDNET_DATA, encoding="utf-8")
    got = wordnet_sentences(tmp_path)
    assert got == ["How big is that part compared to the whole?", "The team is a unit.",
                   "He ran a mile in 4 minutes.", "It was full of rackets, balls and other objects."]


def test_extra_text_never_reaches_dev_and_keeps_primary_ids(tmp_path: Path):
    primary = tmp_path / "primary.txt"
    primary.write_text("\n".join(f"Primary sentence number {w} is here." for w in "abcdefghij"), encoding="utf-8")
    extra = tmp_path / "extra.txt"
    extra.write_text("Primary sentence number a is here.\nAn extra line to speak.\nAnother extra line to speak.\n",
                     encoding="utf-8")
    sents = load_sentences(primary, seed=0)
    more = load_extra_sentences(str(extra), seed=0, exclude=sents)
    assert sorted(more) == ["An extra line to speak.", "Another extra line to speak."]  # the duplicate is gone

    train0, dev0 = plan_jobs(sents, hours=100, seed=0, speakers=1, dev_size=3)
    train, dev = plan_jobs(sents, hours=100, seed=0, speakers=1, dev_size=3, extra=more)
    assert dev == dev0 and train[: len(train0)] == train0
    assert [j.text for j in train[len(train0):]] == more
    assert all(j.id.startswith("ext") for j in train[len(train0):])
    # A small budget is spent on the primary source first.
    short, _ = plan_jobs(sents, hours=1e-3, seed=0, speakers=1, dev_size=3, extra=more)
    assert not any(j.id.startswith("ext") for j in short)

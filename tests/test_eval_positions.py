"""WER by word position (thirds, first word) from jiwer's alignment; several sampling seeds pooled."""
import json

import jiwer
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from codectts.errors import ConfigError, DataError, TextError
from codectts.eval.cli import _baseline, _seeds
from codectts.eval.intelligibility import evaluate_voice_seeds
from codectts.eval.positions import format_positions, position_scores, third, word_errors


@pytest.mark.parametrize("ref, hyp, errors, spans", [
    ("the kettle started to whistle", "the kettle started to whistle", [0, 0, 0, 0, 0], []),
    ("turn left at the lights", "con left at the lights", [1, 0, 0, 0, 0], [0]),
    # words inserted before the first word are errors of the first word
    ("hello this is", "oh wow hello this is", [2, 0, 0], [0]),
    # a trailing insertion belongs to the last word
    ("a b c", "a b c d", [0, 0, 1], [2]),
    ("one two three four five six", "one two three four", [0, 0, 0, 0, 1, 1], [4]),
    # one misheard phrase is one span over three words
    ("a gentle breeze blew", "hno where he's blew", [1, 1, 1, 0], [0]),
    # two separate mishearings are two spans
    ("we missed the last bus by two minutes", "we kissed the last bus by two menus", [0, 1, 0, 0, 0, 0, 0, 1], [1, 7]),
    ("where did you go", "", [1, 1, 1, 1], [0]),
])
def test_word_errors_by_reference_position(ref, hyp, errors, spans):
    assert word_errors(ref, hyp) == (errors, spans)


def test_thirds():
    assert [third(i, 5) for i in range(5)] == [0, 0, 1, 1, 2]
    assert [third(i, 2) for i in range(2)] == [0, 1]  # two words: no last third
    assert [third(i, 1) for i in range(1)] == [0]
    assert [third(i, 9) for i in range(9)] == [0, 0, 0, 1, 1, 1, 2, 2, 2]


def test_position_scores_by_hand():
    refs = ["turn left at the lights", "where did you go", "a b c"]
    hyps = ["con left at the lights", "where did you", "a b c"]
    p = position_scores(refs, hyps)
    # thirds: 5 words -> 2/2/1, 4 words -> 2/1/1 ("go" is i=3: 9 // 4 = 2), 3 words -> 1/1/1
    assert [p[t]["ref_words"] for t in ("first", "middle", "last")] == [5, 4, 3]
    assert [p[t]["errors"] for t in ("first", "middle", "last")] == [1, 0, 1]
    assert p["first"]["wer"] == pytest.approx(1 / 5) and p["middle"]["wer"] == 0.0
    assert [p[t]["spans"] for t in ("first", "middle", "last")] == [1, 0, 1]
    assert p["first_word"] == {"n": 3, "errors": 1, "rate": pytest.approx(1 / 3)}
    lines = format_positions({"voice": p, "teacher": position_scores(refs, refs)})
    assert len(lines) == 5 and "33.3% (1/3)" in lines[-1] and "0.0% (0/3)" in lines[-1]


def test_position_scores_rejects_bad_input():
    with pytest.raises(TextError):
        position_scores(["a b"], [])
    with pytest.raises(TextError):
        word_errors("", "a")


WORDS = st.lists(st.sampled_from(["a", "b", "c", "d"]), min_size=0, max_size=8).map(" ".join)


@settings(max_examples=200, deadline=None)
@given(refs=st.lists(WORDS.filter(bool), min_size=1, max_size=4), data=st.data())
def test_positions_add_up_to_jiwer_word_errors(refs, data):
    hyps = [data.draw(WORDS) for _ in refs]
    p = position_scores(refs, hyps)
    edits = sum(p[t]["errors"] for t in ("first", "middle", "last"))
    words = sum(p[t]["ref_words"] for t in ("first", "middle", "last"))
    assert words == sum(len(r.split()) for r in refs)
    o = jiwer.process_words(refs, hyps)
    assert edits == o.substitutions + o.deletions + o.insertions


class SeedVoice:
    """Seed 0 speaks every text right; other seeds get the first word wrong (transcribed by FakeASR)."""

    name, sample_rate = "fake", 16000

    def synthesize(self, text, seed=0):
        self.said = text if seed < 1000 else "oops " + " ".join(text.split()[1:])
        return np.full(1600, 0.1, np.float32), self.sample_rate


class FakeASR:
    def __init__(self, voice):
        self.voice = voice

    def transcribe(self, wav, sr):
        return self.voice.said


def test_seeds_pool_to_their_mean_with_spread(tmp_path):
    voice = SeedVoice()
    texts = ["where did you put the keys", "we missed the bus"]
    res = evaluate_voice_seeds(voice, texts, FakeASR(voice), seeds=[0, 1000, 2000], save_dir=tmp_path)
    s = res["summary"]
    assert s["seeds"] == [0, 1000, 2000] and s["n"] == 2 and len(res["utterances"]) == 6
    assert s["wer_seeds"] == pytest.approx([0.0, 0.2, 0.2])  # one wrong word of 10, twice
    assert s["wer"] == pytest.approx(np.mean(s["wer_seeds"]))
    assert s["wer_spread"]["min"] == 0.0 and s["wer_spread"]["max"] == pytest.approx(0.2)
    assert s["wer_spread"]["std"] == pytest.approx(np.std([0, 0.2, 0.2], ddof=1))
    assert s["positions"]["first_word"] == {"n": 6, "errors": 4, "rate": pytest.approx(4 / 6)}
    assert [p["seed"] for p in s["per_seed"]] == [0, 1000, 2000]
    assert {r["seed"] for r in res["utterances"]} == {0, 1000, 2000}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seed0", "seed1000", "seed2000"]
    with pytest.raises(DataError):
        evaluate_voice_seeds(voice, texts, FakeASR(voice), seeds=[1, 1])


def test_seeds_option():
    assert _seeds("0,1,2") == [0, 1, 2] and _seeds("7") == [7]
    for bad in ("", "0,0", "a,b"):
        with pytest.raises(ConfigError):
            _seeds(bad)


def test_saved_baseline_is_rescored_on_the_same_texts(tmp_path):
    saved = tmp_path / "teacher.json"
    utts = [{"text": "Turn left at the lights.", "hypothesis": "Con left at the lights."},
            {"text": "This is codectts.", "hypothesis": "This is Codec TTS."}]
    saved.write_text(json.dumps({"utterances": utts, "summary": {}}))
    base, hyps = _baseline(str(saved), [u["text"] for u in utts], transcriber=None)
    assert hyps == {u["text"]: u["hypothesis"] for u in utts}
    assert base["wer"] == pytest.approx(1 / 9)  # "codectts" is "codec tts" on both sides (lexicon)
    assert base["positions"]["first_word"]["errors"] == 1
    with pytest.raises(DataError, match="not the 1"):
        _baseline(str(saved), ["Another text."], transcriber=None)
    with pytest.raises(DataError):
        _baseline(str(tmp_path / "missing.json"), ["x"], transcriber=None)

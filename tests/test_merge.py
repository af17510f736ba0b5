"""corpus merge: one speaker per source, no dev sentence in anyone's training, clear refusals."""
import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from codectts.cli import app
from codectts.data.manifest import Utterance, read_corpus, write_jsonl
from codectts.data.merge import merge_corpora, parse_source
from codectts.errors import ConfigError, DataError


def make_corpus(folder, texts, dev_texts, sr=22050, durations=True, seconds=1.0):
    (folder / "wavs").mkdir(parents=True)

    def utt(i, text):
        uid = f"utt{i:03d}"
        sf.write(folder / "wavs" / f"{uid}.wav", np.zeros(int(sr * seconds), np.float32), sr)
        return Utterance(id=uid, audio=f"wavs/{uid}.wav", text=text, normalized=text, duration=seconds,
                         phonemes=["^", "a", "$"] if durations else [], durations=[1, 2, 1] if durations else [],
                         hop=256 if durations else 0, sample_rate=sr)

    write_jsonl(folder / "manifest.jsonl", [utt(i, t) for i, t in enumerate(texts)])
    write_jsonl(folder / "dev.jsonl", [utt(100 + i, t) for i, t in enumerate(dev_texts)])


def test_merge_relabels_and_keeps_dev_out_of_training(tmp_path):
    make_corpus(tmp_path / "a", ["One two.", "Shared dev line.", "Three four."], ["Alpha beta."])
    make_corpus(tmp_path / "b", ["alpha   BETA.", "Five six."], ["Shared dev line."])
    out = tmp_path / "deep" / "merged"
    summary = merge_corpora(out, [f"{tmp_path / 'a'}=joe", str(tmp_path / "b")])
    train, root = read_corpus(out, "train")
    dev, _ = read_corpus(out, "dev")
    assert root == out
    assert [u.id for u in train] == ["joe-utt000", "joe-utt002", "b-utt001"]
    assert {u.speaker for u in train} == {"joe", "b"} and {u.speaker for u in dev} == {"joe", "b"}
    assert summary["speakers"]["joe"]["dropped_dev_text"] == 1 and summary["speakers"]["b"]["dropped_dev_text"] == 1
    for u in train + dev:  # relative paths that reach the sources' audio
        assert not u.audio.startswith("/") and u.audio_path(root).exists()
    assert list(json.loads((out / "corpus.json").read_text())["speakers"]) == ["joe", "b"]
    again = merge_corpora(tmp_path / "again", [str(out), f"{tmp_path / 'a'}=ann"], hours=1 / 3600)
    assert list(again["speakers"]) == ["joe", "b", "ann"]  # a merged source keeps its speakers
    assert [again["speakers"][s]["train_utterances"] for s in ("joe", "b", "ann")] == [1, 1, 1]
    assert read_corpus(tmp_path / "again", "train")[0][0].id == "joe-joe-utt000"


def test_merge_hours_keeps_leading_rows(tmp_path):
    make_corpus(tmp_path / "a", [f"Sentence {w}." for w in "abcdefgh"], ["Dev."], seconds=1.0)
    summary = merge_corpora(tmp_path / "m", [str(tmp_path / "a")], hours=2.5 / 3600)
    assert summary["speakers"]["a"]["train_utterances"] == 3  # 1 + 1 + 1 s reaches 2.5 s


def test_merge_refuses_mismatches(tmp_path):
    make_corpus(tmp_path / "a", ["One."], ["Dev a."])
    make_corpus(tmp_path / "b16", ["Two."], ["Dev b."], sr=16000)
    make_corpus(tmp_path / "nodur", ["Three."], ["Dev c."], durations=False)
    with pytest.raises(DataError, match="sample rates"):
        merge_corpora(tmp_path / "m1", [str(tmp_path / "a"), str(tmp_path / "b16")])
    with pytest.raises(DataError, match="align"):
        merge_corpora(tmp_path / "m2", [str(tmp_path / "a"), str(tmp_path / "nodur")])
    with pytest.raises(ConfigError, match="share the speaker"):
        merge_corpora(tmp_path / "m3", [f"{tmp_path / 'a'}=x", f"{tmp_path / 'nodur'}=x"])
    with pytest.raises(ConfigError, match="speaker name"):
        parse_source("a=two words")
    with pytest.raises(DataError, match="no such manifest|no manifest|no dev"):
        merge_corpora(tmp_path / "m4", [str(tmp_path / "missing")])


def test_merge_cli(tmp_path):
    make_corpus(tmp_path / "a", ["One."], ["Dev a."])
    make_corpus(tmp_path / "b", ["Two."], ["Dev b."])
    r = CliRunner().invoke(app, ["corpus", "merge", "--out", str(tmp_path / "m"), f"{tmp_path / 'a'}=kal",
                                 f"{tmp_path / 'b'}=ked"])
    assert r.exit_code == 0, r.output
    assert list(json.loads(r.output)["speakers"]) == ["kal", "ked"]
    r = CliRunner().invoke(app, ["corpus", "merge", "--out", str(tmp_path / "m2"), f"{tmp_path / 'a'}=k",
                                 f"{tmp_path / 'b'}=k"])
    assert isinstance(r.exception, ConfigError) and "share the speaker" in str(r.exception)  # run() prints it

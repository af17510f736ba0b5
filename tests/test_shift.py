"""corpus shift: a pitch-shifted copy of a corpus is a new speaker with the same rows and timing."""
import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from codectts.cli import app
from codectts.data.manifest import Utterance, read_corpus, write_jsonl
from codectts.data.merge import merge_corpora
from codectts.data.shift import shift_corpus, shift_wav
from codectts.errors import ConfigError

SR = 16000


def tone(freq: float, seconds: float = 1.0) -> np.ndarray:
    t = np.arange(int(SR * seconds)) / SR
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def dominant(wav: np.ndarray) -> float:
    spec = np.abs(np.fft.rfft(wav * np.hanning(len(wav))))
    return float(np.fft.rfftfreq(len(wav), 1 / SR)[spec.argmax()])


def make_corpus(folder, n_train=3, n_dev=1):
    (folder / "wavs").mkdir(parents=True)

    def utt(uid):
        sf.write(folder / "wavs" / f"{uid}.wav", tone(220.0), SR)
        return Utterance(id=uid, audio=f"wavs/{uid}.wav", text=f"Line {uid}.", duration=1.0,
                         phonemes=["^", "a", "$"], durations=[10, 40, 12], hop=256, sample_rate=SR)

    write_jsonl(folder / "manifest.jsonl", [utt(f"t{i}") for i in range(n_train)])
    write_jsonl(folder / "dev.jsonl", [utt(f"d{i}") for i in range(n_dev)])


def test_shift_moves_pitch_and_keeps_length():
    wav = tone(220.0)
    up, down = shift_wav(wav, SR, 12.0), shift_wav(wav, SR, -5.0)
    assert len(up) == len(down) == len(wav)
    assert dominant(up) == pytest.approx(440.0, rel=0.03)
    assert dominant(down) == pytest.approx(220.0 * 2 ** (-5 / 12), rel=0.03)
    assert np.abs(up).max() <= 0.99


def test_shift_corpus_copies_rows_resumes_and_merges(tmp_path):
    make_corpus(tmp_path / "src")
    out = tmp_path / "low"
    summary = shift_corpus(tmp_path / "src", out, -3.0, hours=2 / 3600, progress=False)
    assert summary["written"] == 3 and summary["train_utterances"] == 2 and summary["dev_utterances"] == 1
    src, _ = read_corpus(tmp_path / "src", "train")
    train, root = read_corpus(out, "train")
    assert root == out and [u.id for u in train] == ["t0", "t1"]
    for a, b in zip(src, train, strict=False):  # same rows and timing, its own audio
        assert (a.text, a.phonemes, a.durations) == (b.text, b.phonemes, b.durations)
        wav, sr = sf.read(b.audio_path(root), dtype="float32")
        assert sr == SR and len(wav) == SR and dominant(wav) == pytest.approx(220 * 2 ** -0.25, rel=0.03)
    before = (out / "wavs" / "t0.wav").stat().st_mtime_ns
    again = shift_corpus(tmp_path / "src", out, -3.0, progress=False)  # resumes: keeps what exists
    assert again["kept"] == 3 and again["written"] == 1 and (out / "wavs" / "t0.wav").stat().st_mtime_ns == before
    merged = merge_corpora(tmp_path / "ms", [f"{tmp_path / 'src'}=ann", f"{out}=ann-3"])
    assert list(merged["speakers"]) == ["ann", "ann-3"] and merged["durations"]
    assert json.loads((out / "corpus.json").read_text())["semitones"] == -3.0


def test_shift_refuses_bad_settings(tmp_path):
    make_corpus(tmp_path / "src")
    for bad in (0.0, 13.0, float("nan")):
        with pytest.raises(ConfigError, match="semitones"):
            shift_corpus(tmp_path / "src", tmp_path / "x", bad, progress=False)
    with pytest.raises(ConfigError, match="new folder"):
        shift_corpus(tmp_path / "src", tmp_path / "src", 2.0, progress=False)
    with pytest.raises(ConfigError, match="hours"):
        shift_corpus(tmp_path / "src", tmp_path / "x", 2.0, hours=0, progress=False)
    res = CliRunner().invoke(app, ["corpus", "shift", "--data", str(tmp_path / "src"), "--out", str(tmp_path / "y"),
                                   "--semitones", "1.5", "--no-progress"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.output)["written"] == 4

"""`codectts eval` on tiny synthetic folders: JSON out, pairing errors, silent audio scored as WER 1.0."""
import json

import numpy as np
import pytest
from typer.testing import CliRunner

from codectts.audio.io import save_wav
from codectts.errors import ConfigError, DataError
from codectts.eval.cli import app

SR = 16000
runner = CliRunner()


def tone(seconds: float = 1.0, f: float = 220.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * np.sin(2 * np.pi * f * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)


@pytest.fixture()
def silent_folder(tmp_path):
    d = tmp_path / "wavs"
    for i, text in enumerate(["first words here", "second sentence"]):
        save_wav(d / f"u{i}.wav", np.zeros(SR // 2, np.float32), SR)
        (d / f"u{i}.txt").write_text(text + "\n")
    return d


def test_asr_on_silent_wavs_scores_wer_one(silent_folder, tmp_path):
    out = tmp_path / "asr.json"
    r = runner.invoke(app, ["asr", "--wavs", str(silent_folder), "--out", str(out)])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    assert data["summary"]["wer"] == 1.0 and data["summary"]["n"] == 2
    assert [u["hypothesis"] for u in data["utterances"]] == ["", ""]


def test_asr_pairing_errors(silent_folder, tmp_path):
    (silent_folder / "u1.txt").unlink()
    r = runner.invoke(app, ["asr", "--wavs", str(silent_folder)])
    assert isinstance(r.exception, DataError) and "u1.wav" in str(r.exception)
    texts = tmp_path / "texts.txt"
    texts.write_text("only one line\n")
    r = runner.invoke(app, ["asr", "--wavs", str(silent_folder), "--texts", str(texts)])
    assert isinstance(r.exception, DataError) and "1 text(s) but 2 wav(s)" in str(r.exception)
    r = runner.invoke(app, ["asr"])
    assert isinstance(r.exception, ConfigError)


def test_asr_manifest_limit(tmp_path):
    save_wav(tmp_path / "wavs" / "a.wav", np.zeros(SR // 4, np.float32), SR)
    lines = [json.dumps({"id": f"a{i}", "audio": "wavs/a.wav", "text": "hello there"}) for i in range(3)]
    (tmp_path / "dev.jsonl").write_text("\n".join(lines) + "\n")
    out = tmp_path / "m.json"
    r = runner.invoke(app, ["asr", "--manifest", str(tmp_path), "--limit", "2", "--quiet", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert json.loads(out.read_text())["summary"]["n"] == 2


def test_compare_command(tmp_path):
    x = tone()
    save_wav(tmp_path / "ref.wav", x, SR)
    save_wav(tmp_path / "test.wav", x + 0.05 * np.random.default_rng(0).standard_normal(len(x)).astype(np.float32), SR)
    out = tmp_path / "c.json"
    r = runner.invoke(app, ["compare", str(tmp_path / "ref.wav"), str(tmp_path / "test.wav"), "--out", str(out)])
    assert r.exit_code == 0, r.output
    m = json.loads(out.read_text())
    assert m["mel_l1"] > 0 and m["si_sdr"] < 30 and set(m) >= {"pesq_wb", "stoi", "mrstft", "mel_mse"}


def test_tts_rejects_voice_and_teacher_together():
    r = runner.invoke(app, ["tts", "--voice", "x", "--teacher"])
    assert isinstance(r.exception, ConfigError)


@pytest.mark.slow
def test_tts_teacher_one_sentence(tmp_path):
    out, wavs, texts = tmp_path / "t.json", tmp_path / "wavs", tmp_path / "texts.txt"
    texts.write_text("Please close the window before you leave the office.\nThis line is not used.\n")
    r = runner.invoke(app, ["tts", "--teacher", "--texts", str(texts), "--limit", "1", "--save-wavs", str(wavs),
                            "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    s = json.loads(out.read_text())["summary"]
    assert s["n"] == 1 and s["wer"] < 0.2 and 0 < s["rtf"] < 5 and s["durations"]["total_s"] > 1
    r = runner.invoke(app, ["asr", "--wavs", str(wavs), "--quiet"])  # saved wavs + texts score again
    assert r.exit_code == 0 and "WER" in r.output
    r = runner.invoke(app, ["tts", "--teacher", "--texts", str(texts), "--limit", "1", "--baseline", str(out),
                            "--quiet", "--no-dnsmos"])  # the same deterministic teacher: no difference at all
    assert r.exit_code == 0 and "WER voice - t: +0.0000, 95 % interval [+0.0000, +0.0000]" in r.output, r.output


def test_asr_reports_dnsmos_beside_wer(silent_folder, tmp_path):
    pytest.importorskip("speechmos")
    save_wav(silent_folder / "u1.wav", tone(1.0), SR)  # one rated clip, one silent one
    out = tmp_path / "asr.json"
    r = runner.invoke(app, ["asr", "--wavs", str(silent_folder), "--out", str(out)])
    assert r.exit_code == 0, r.output
    data = json.loads(out.read_text())
    mos = data["summary"]["dnsmos"]
    assert mos["n"] == 1 and mos["unscored"] == 1 and 1.0 <= mos["ovrl"] <= 5.0
    assert data["utterances"][0]["dnsmos"] is None and "DNSMOS OVRL" in r.output
    r = runner.invoke(app, ["asr", "--wavs", str(silent_folder), "--no-dnsmos", "--out", str(out)])
    assert r.exit_code == 0 and "dnsmos" not in json.loads(out.read_text())["summary"]


def test_baseline_json_pairs_each_seed_with_its_sentence(tmp_path):
    from codectts.eval.cli import _against_baseline, _baseline

    texts = ["the cat sat on the mat today", "a dog ran in the park"]
    saved = tmp_path / "teacher.json"
    saved.write_text(json.dumps({"utterances": [{"text": t, "hypothesis": t} for t in texts]}))
    base, hyps = _baseline(str(saved), texts, transcriber=None)
    assert base["wer"] == 0 and hyps == dict(zip(texts, texts, strict=True))
    # two seeds of a voice: seed 0 perfect, seed 1 drops one word of the first sentence (1 of 26 words)
    voice = [{"text": t, "hypothesis": t, "seed": 0} for t in texts]
    voice += [{"text": texts[0], "hypothesis": "the cat sat on the mat", "seed": 1}, {**voice[1], "seed": 1}]
    diff = _against_baseline(voice, hyps)
    assert diff["diff"] == pytest.approx(1 / 26) and diff["n"] == 4 and diff["ci95"][0] == 0.0
    with pytest.raises(DataError, match="not the 1 being evaluated"):
        _baseline(str(saved), texts[:1], transcriber=None)

"""`codectts corpus import`: an LJSpeech folder with odd rows; every row is imported or listed with its reason."""
import json

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from codectts.data.ljspeech import ImportConfig, import_ljspeech, parse_metadata
from codectts.data.manifest import read_jsonl
from codectts.errors import DataError


def speech_like(sr: int, seconds: float, lead: float = 0.4) -> np.ndarray:
    """A warbling tone between silences (what trimming must cut back to a short margin)."""
    t = np.arange(int(sr * seconds)) / sr
    tone = 0.3 * np.sin(2 * np.pi * (180 + 40 * np.sin(2 * np.pi * 3 * t)) * t)
    sil = np.zeros(int(sr * lead))
    return np.concatenate([sil, tone, sil]).astype(np.float32)


@pytest.fixture
def folder(tmp_path):
    d = tmp_path / "lj"
    (d / "wavs").mkdir(parents=True)
    sf.write(d / "wavs" / "ok.wav", speech_like(22050, 1.0), 22050)
    sf.write(d / "wavs" / "stereo.wav", np.stack([speech_like(44100, 1.2)] * 2, 1), 44100)
    sf.write(d / "wavs" / "narrow.wav", speech_like(16000, 0.8), 16000)
    sf.write(d / "wavs" / "numbers.wav", speech_like(22050, 1.5), 22050)
    sf.write(d / "wavs" / "long.wav", speech_like(22050, 4.0), 22050)
    sf.write(d / "wavs" / "silent.wav", np.zeros(22050, np.float32), 22050)
    sf.write(d / "wavs" / "blip.wav", speech_like(22050, 0.1), 22050)
    sf.write(d / "wavs" / "pause.wav", np.concatenate([speech_like(22050, 0.5, 0.1), np.zeros(30000, np.float32),
                                                       speech_like(22050, 0.5, 0.1)]), 22050)
    sf.write(d / "wavs" / "empty.wav", speech_like(22050, 1.0), 22050)
    (d / "wavs" / "garbage.wav").write_bytes(b"RIFF not really a wave file")
    lines = ["ok|Hello there, how are you?", "stereo|A stereo recording.|A stereo recording.",
             "narrow|Sixteen kilohertz.", "numbers|It costs $42 on 3 May.", "long|This clip is too long.",
             "silent|Nothing is heard here.", "blip|Too short.", "pause|Wait. Then go on.", "empty|",
             "garbage|Broken file.", "missing|This file does not exist.", "no pipe here", "ok|Duplicate id.",
             "dots|...", "../evil|Path in the id."]
    raw = "\n".join(lines).encode() + b"\nlatin|caf\xe9\n\n"
    (d / "metadata.csv").write_bytes(raw)
    return d


def test_import_odd_rows(folder, tmp_path):
    out = tmp_path / "corpus"
    report = import_ljspeech(folder, out, ImportConfig(max_seconds=3.0, dev_size=0), progress=False)
    rejects = {}
    for line in (out / "rejects.tsv").read_text().splitlines()[1:]:
        n, uid, reason = line.split("\t")
        rejects[(int(n), uid)] = reason
    assert report["rows"] == 16 and report["imported"] + report["rejected"] == 16
    assert report["imported"] == 5 and report["rejected"] == 11, rejects
    by_id = {uid: r for (_, uid), r in rejects.items()}
    assert "missing audio" in by_id["missing"] and "unreadable" in by_id["garbage"]
    assert "empty text" in by_id["empty"] and "over the 3 s limit" in by_id["long"]
    assert "silent" in by_id["silent"] and "non-speech" in by_id["blip"]
    assert "duplicate" in rejects[(13, "ok")] and "expected id|text" in rejects[(12, "no pipe here")]
    assert "nothing to speak" in by_id["dots"] and "plain file" in by_id["../evil"]
    assert "UTF-8" in rejects[(16, "")]
    utts = {u.id: u for u in read_jsonl(out / "manifest.jsonl")}
    assert set(utts) == {"ok", "stereo", "narrow", "numbers", "pause"} and read_jsonl(out / "dev.jsonl") == []
    for u in utts.values():
        wav, sr = sf.read(out / u.audio)
        assert sr == 22050 and wav.ndim == 1 and len(wav) % 256 == 0 and u.hop == 256 and u.sample_rate == 22050
        assert u.phonemes[0] == "^" and u.phonemes[-1] == "$" and not u.durations
        assert abs(len(wav) / sr - u.duration) < 1e-3
    ok_len = sf.info(out / "wavs" / "ok.wav").duration
    assert 1.0 <= ok_len < 1.2  # 0.4 s of silence each side trimmed to a short margin
    assert utts["numbers"].normalized == "It costs forty-two dollars on three May."
    warnings = {w["id"]: " ".join(w["warnings"]) for w in report["warnings"]}
    assert "downmixed" in warnings["stereo"] and "resampled from 44100" in warnings["stereo"]
    assert "resampled from 16000" in warnings["narrow"] and "internal silence" in warnings["pause"]
    assert "ok" not in warnings
    assert json.loads((out / "import_report.json").read_text())["rejected_by_reason"]["too long"] == 1
    assert (out / "metadata.csv").read_text().count("\n") == 5


def test_dev_split_and_refusals(folder, tmp_path):
    meta = "".join(f"u{i}|Sentence number {i}.\n" for i in range(40))
    (folder / "metadata.csv").write_text(meta)
    for i in range(40):
        sf.write(folder / "wavs" / f"u{i}.wav", speech_like(22050, 0.6), 22050)
    out = tmp_path / "c"
    report = import_ljspeech(folder, out, progress=False)
    assert report["dev"] == len(read_jsonl(out / "dev.jsonl")) and report["train"] + report["dev"] == 40
    assert 0 < report["dev"] <= 4
    with pytest.raises(DataError):
        import_ljspeech(folder, folder, progress=False)
    with pytest.raises(DataError):
        import_ljspeech(tmp_path / "nowhere", tmp_path / "x", progress=False)


def test_parse_metadata_keeps_normalised_column(tmp_path):
    p = tmp_path / "metadata.csv"
    p.write_text("a|Dr. Who|Doctor Who\r\nb||given only normalised\n")
    rows, rejects = parse_metadata(p)
    assert rows == [(1, "a", "Dr. Who", "Doctor Who"), (2, "b", "", "given only normalised")] and rejects == []


def test_cli_import(folder, tmp_path):
    from codectts.cli import app

    (folder / "metadata.csv").write_text("ok|Hello there.\nmissing|Nope.\n")
    r = CliRunner().invoke(app, ["corpus", "import", "--ljspeech", str(folder), "--out", str(tmp_path / "c")])
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert out["imported"] == 1 and out["rejected"] == 1

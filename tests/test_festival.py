"""`codectts corpus festival`: a Festival voice speaks the text source into an LJSpeech folder with its timings."""
import json

import pytest
import soundfile as sf

from codectts.data import festival
from codectts.data.festival import build_festival_corpus, check_festival
from codectts.errors import ConfigError

VOICE = "cmu_us_slt_arctic_hts"
SENTENCES = ["The quick brown fox jumps over the lazy dog.", "She said \"no\" and walked away.",
             "A stitch in time saves nine.", "Where there is smoke, there is fire.", "All is well that ends well."]


def has_voice() -> bool:
    try:
        check_festival(VOICE)
        return True
    except ConfigError:
        return False


def test_missing_festival_names_the_package(monkeypatch):
    monkeypatch.setattr(festival.shutil, "which", lambda _: None)
    with pytest.raises(ConfigError, match="apt-get install festival festvox-us-slt-hts"):
        check_festival(VOICE)


def test_missing_voice_names_the_package(monkeypatch, tmp_path):
    monkeypatch.setattr(festival.shutil, "which", lambda _: "/usr/bin/festival")
    monkeypatch.setattr(festival, "VOICE_DIRS", [tmp_path])
    with pytest.raises(ConfigError, match="'kal_diphone' is not installed .apt-get install festvox-kallpc16k"):
        check_festival("kal_diphone")
    with pytest.raises(ConfigError, match="'no_such_voice' is not installed .install the Debian festvox"):
        check_festival("no_such_voice")


@pytest.mark.skipif(not has_voice(), reason="festival or festvox-us-slt-hts not installed")
def test_tiny_corpus_with_timings(tmp_path):
    text = tmp_path / "sentences.txt"
    text.write_text("\n".join(SENTENCES) + "\n")
    out = tmp_path / "slt"
    info = build_festival_corpus(out, voice=VOICE, hours=6 / 3600, seed=3, text_file=text)
    rows = [ln.split("|") for ln in (out / "metadata.csv").read_text().splitlines()]
    timings = [json.loads(ln) for ln in (out / "festival_timings.jsonl").read_text().splitlines()]
    assert info["utterances"] == len(rows) == len(timings) >= 2 and not info["failed"]
    assert [r[0] for r in rows] == [t["id"] for t in timings]
    assert all(r[1] in SENTENCES for r in rows)
    total = 0.0
    for (uid, sentence), t in zip(rows, timings, strict=True):
        seconds = sf.info(str(out / "wavs" / f"{uid}.wav")).duration
        total += seconds
        segs, words = t["segments"], t["words"]
        assert segs[0][1] == 0 and all(a[2] == b[1] for a, b in zip(segs, segs[1:], strict=False))
        assert abs(segs[-1][2] - seconds) < 0.05  # Festival's segments span its wave
        assert [w[0].lower() for w in words] == [w.strip('.,!?";').lower() for w in sentence.split()]
        assert all(0 <= w[1] < w[2] <= seconds + 1e-3 for w in words)
    # the cut: the first sentences in order whose audio reaches the target, not one more
    assert total >= 6 and total - sf.info(str(out / "wavs" / f"{rows[-1][0]}.wav")).duration < 6
    # resumable and deterministic: a rerun speaks nothing new and writes the same folder
    before = (out / "metadata.csv").read_bytes(), (out / "festival_timings.jsonl").read_bytes()
    again = build_festival_corpus(out, voice=VOICE, hours=6 / 3600, seed=3, text_file=text)
    assert again["utterances"] == info["utterances"] and again["wall_s"] < 2
    assert ((out / "metadata.csv").read_bytes(), (out / "festival_timings.jsonl").read_bytes()) == before

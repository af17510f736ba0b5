"""`codectts eval roundtrip` on tiny synthetic inputs: same names out, bad inputs reported, mismatches refused."""
import json
import logging

import numpy as np
import pytest
import soundfile as sf
from typer.testing import CliRunner

from codectts.audio.io import save_wav
from codectts.audio.mel import mel_preset
from codectts.codecs.mel_rvq import MelRVQCodec, MelRVQConfig
from codectts.errors import ConfigError, DataError
from codectts.eval.cli import app
from codectts.eval.roundtrip import SoundChain, chain_from_parts, chain_from_voice
from codectts.vocoders import GriffinLim, HiFiGAN
from codectts.vocoders.hifigan import preset as hifigan_preset

SR = 22050
runner = CliRunner()


def voiced(seconds: float = 1.0, sr: int = SR, amp: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    phase = 2 * np.pi * np.cumsum(120 + 20 * np.sin(2 * np.pi * 0.7 * t)) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 20)) * (0.5 + 0.5 * np.sin(2 * np.pi * 3 * t))
    return (amp * x / np.abs(x).max()).astype(np.float32)


@pytest.fixture(scope="module")
def codec_dir(tmp_path_factory):
    cfg = MelRVQConfig(mel=mel_preset("vocoder"), stack=2, arch="conv", hidden=16, n_res_blocks=1,
                       n_codebooks=2, codebook_size=8)
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    return MelRVQCodec(cfg).save(tmp_path_factory.mktemp("parts") / "codec")


@pytest.fixture()
def inputs(tmp_path):
    d = tmp_path / "in"
    save_wav(d / "a_normal.wav", voiced(1.0), SR)
    save_wav(d / "b_16k.wav", voiced(0.8, sr=16000), 16000)
    save_wav(d / "c_silent.wav", np.zeros(SR // 2, np.float32), SR)
    sf.write(d / "d_clipped.wav", np.clip(voiced(0.7, amp=3.0), -1, 1), SR, subtype="FLOAT")
    sf.write(d / "e_empty.wav", np.zeros(0, np.float32), SR)
    return d


def test_roundtrip_cli_writes_same_names_and_reports_bad_inputs(codec_dir, inputs, tmp_path, caplog):
    out = tmp_path / "out"
    args = ["roundtrip", "--codec", str(codec_dir), "--vocoder", "griffinlim", "--wavs", str(inputs), "--out",
            str(out)]
    try:
        import speechmos  # noqa: F401
    except ImportError:
        args.append("--no-dnsmos")
    with caplog.at_level(logging.WARNING):
        r = runner.invoke(app, args)
    assert r.exit_code == 0, r.output
    assert sorted(p.name for p in out.glob("*.wav")) == ["a_normal.wav", "b_16k.wav", "d_clipped.wav"]
    for name, n in [("a_normal.wav", SR), ("b_16k.wav", int(0.8 * SR)), ("d_clipped.wav", int(0.7 * SR))]:
        info = sf.info(out / name)
        assert info.samplerate == SR and abs(info.frames - n) <= 1
    data = json.loads((out / "roundtrip.json").read_text())
    s = data["summary"]
    assert s["n"] == 5 and s["resynthesised"] == 3 and s["resampled"] == 1 and s["clipped"] == 1
    assert s["skipped"] == {"c_silent": "silent", "e_empty": "empty"}
    assert s["n_codebooks"] == 2 and s["bits_per_second"] == pytest.approx(SR / 512 * 2 * 3)
    assert s["vs_input"]["mel_l1"] > 0 and "wer" not in s  # no texts: no ASR
    assert "16000 Hz, resampled" in caplog.text and "silent" in r.output
    if "--no-dnsmos" not in args:
        assert s["dnsmos"]["n"] == 3 and s["dnsmos_input"]["n"] == 3


def test_vocoder_alone_beats_an_untrained_codec(codec_dir, tmp_path):
    """The chain really runs the codec: an untrained 2x8 codec must lose to the vocoder on the input's own mel."""
    from codectts.eval.roundtrip import Item, run_roundtrip

    save_wav(tmp_path / "in" / "x.wav", voiced(1.0), SR)
    items = [Item("x", tmp_path / "in" / "x.wav")]
    alone = run_roundtrip(chain_from_parts(None, "griffinlim"), items, tmp_path / "gl")["summary"]
    coded = run_roundtrip(chain_from_parts(codec_dir, "griffinlim"), items, tmp_path / "codec")["summary"]
    assert "bits_per_second" not in alone and coded["bits_per_second"] > 0
    assert alone["vs_input"]["mel_l1"] < 0.5 * coded["vs_input"]["mel_l1"]


def test_vocoder_for_other_mels_is_refused_at_load(codec_dir, tmp_path):
    other = mel_preset("16k")
    voc = HiFiGAN(hifigan_preset("tiny", mel=other))
    voc.save(tmp_path / "voc16k")
    with pytest.raises(ConfigError, match="mel"):
        chain_from_parts(codec_dir, str(tmp_path / "voc16k"))
    codec = MelRVQCodec.load(codec_dir)
    with pytest.raises(ConfigError, match="mel"):
        SoundChain(vocoder=GriffinLim(other), codec=codec)
    r = runner.invoke(app, ["roundtrip", "--codec", str(codec_dir), "--vocoder", str(tmp_path / "voc16k"),
                            "--wavs", str(tmp_path), "--out", str(tmp_path / "o")])
    assert isinstance(r.exception, ConfigError)


def test_roundtrip_argument_errors(tmp_path):
    r = runner.invoke(app, ["roundtrip", "--out", str(tmp_path / "o")])
    assert isinstance(r.exception, ConfigError)
    r = runner.invoke(app, ["roundtrip", "--voice", "joe", "--vocoder", "griffinlim", "--wavs", str(tmp_path),
                            "--out", str(tmp_path / "o")])
    assert isinstance(r.exception, ConfigError)
    (tmp_path / "w").mkdir()
    r = runner.invoke(app, ["roundtrip", "--vocoder", "griffinlim", "--wavs", str(tmp_path / "w"), "--out",
                            str(tmp_path / "o")])
    assert isinstance(r.exception, DataError)


def test_shipped_voice_chain():
    chain = chain_from_voice("joe")
    y, times = chain(voiced(0.5))
    assert y.shape == (int(0.5 * SR),) and np.isfinite(y).all() and "codec_s" in times
    assert chain.info()["n_codebooks"] == 4


@pytest.mark.slow
def test_roundtrip_with_texts_scores_wer_for_input_and_output(codec_dir, tmp_path):
    save_wav(tmp_path / "in" / "a.wav", voiced(1.0), SR)
    (tmp_path / "texts.txt").write_text("hello there\n")
    out = tmp_path / "out"
    r = runner.invoke(app, ["roundtrip", "--vocoder", "griffinlim", "--wavs", str(tmp_path / "in"), "--texts",
                            str(tmp_path / "texts.txt"), "--out", str(out), "--no-dnsmos"])
    assert r.exit_code == 0, r.output
    s = json.loads((out / "roundtrip.json").read_text())["summary"]
    assert 0 <= s["wer"] and 0 <= s["input_wer"] and "WER" in r.output

"""Server audio encoders: whole files and append-only streams decode to the same audio."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf

from codectts.errors import AudioError, ConfigError
from codectts.serve.formats import (
    FORMATS,
    OPUS_RATES,
    StreamEncoder,
    encodable_formats,
    encode_full,
    output_rate,
    to_pcm16,
)

SR = 22050


def stream_bytes(fmt: str, wav: np.ndarray, chunk: int = 1000) -> list[bytes]:
    enc = StreamEncoder(fmt, SR)
    return [enc.feed(wav[i:i + chunk]) for i in range(0, wav.size, chunk)] + [enc.finish()]


def test_wav_and_pcm_are_always_available():
    assert {"wav", "pcm"} <= set(encodable_formats())


def test_pcm16_rounds_and_clips():
    pcm = np.frombuffer(to_pcm16(np.array([0.0, 1.0, -1.0, 2.0, -2.0, 0.5], np.float32)), "<i2")
    assert pcm.tolist() == [0, 32767, -32767, 32767, -32767, 16384]


@pytest.mark.parametrize("fmt", ["wav", "pcm"])
def test_streamed_raw_formats_equal_the_whole_file(fmt, sine):
    wav = sine(330, SR, 1.0, 0.4)
    streamed = b"".join(stream_bytes(fmt, wav))
    whole = encode_full(wav, SR, fmt)
    if fmt == "pcm":
        assert streamed == whole
    else:  # same samples; only the size fields differ (unknown vs known length)
        assert streamed[44:] == whole[44:] and len(streamed) == len(whole)
        assert (
            sf.read(io.BytesIO(streamed), dtype="int16")[0].tolist()
            == sf.read(io.BytesIO(whole), dtype="int16")[0].tolist()
        )


@pytest.mark.parametrize("fmt", ["mp3", "opus"])
def test_streamed_compressed_formats_emit_early_and_decode(fmt, sine):
    if fmt not in encodable_formats():
        pytest.skip(f"libsndfile here cannot encode {fmt}")
    wav = sine(330, SR, 2.0, 0.4)
    parts = stream_bytes(fmt, wav, chunk=2205)
    assert sum(map(len, parts[:-1])) > 0  # bytes before the end of the utterance
    out, sr = sf.read(io.BytesIO(b"".join(parts)), dtype="float32")
    assert sr == output_rate(fmt, SR)
    assert abs(out.size / sr - 2.0) < 0.1
    assert 0.2 < np.sqrt(np.mean(out**2)) < 0.4  # a 0.4-peak sine has RMS 0.28


@pytest.mark.parametrize("fmt", ["flac", "mp3", "opus"])
def test_whole_compressed_files_decode(fmt, sine):
    if fmt not in encodable_formats():
        pytest.skip(f"libsndfile here cannot encode {fmt}")
    out, sr = sf.read(io.BytesIO(encode_full(sine(330, SR, 1.0, 0.4), SR, fmt)), dtype="float32")
    assert sr == output_rate(fmt, SR) and abs(out.size / sr - 1.0) < 0.06


def test_opus_gets_the_next_rate_it_allows():
    assert output_rate("opus", 22050) == 24000 and output_rate("opus", 16000) == 16000
    assert output_rate("opus", 96000) == OPUS_RATES[-1] and output_rate("mp3", 22050) == 22050


def test_flac_is_not_streamable():
    assert not FORMATS["flac"].streamable
    with pytest.raises(ConfigError):
        StreamEncoder("flac", SR)


def test_non_finite_audio_is_refused(sine):
    bad = sine(330, SR, 1.0, 0.4)
    bad[10] = np.nan
    with pytest.raises(AudioError):
        encode_full(bad, SR, "wav")
    with pytest.raises(AudioError):
        StreamEncoder("pcm", SR).feed(bad)


def test_empty_audio_encodes():
    assert encode_full(np.zeros(0, np.float32), SR, "pcm") == b""
    assert sf.read(io.BytesIO(encode_full(np.zeros(0, np.float32), SR, "wav")))[0].size == 0

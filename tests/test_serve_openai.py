"""The official `openai` client, pointed at a live codectts server, gets valid audio."""
from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile as sf
from serve_double import SECONDS_PER_CHAR, ToneSynthesizer, live_server

from codectts.serve import create_app

openai = pytest.importorskip("openai")
TEXT = "The openai package should not notice which server it is talking to."  # normalises to itself


@pytest.fixture(scope="module")
def server():
    with live_server(create_app({"tone": ToneSynthesizer(chunk_delay_s=0.005)})) as url:
        yield url


@pytest.fixture
def client(server):
    with openai.OpenAI(base_url=f"{server}/v1", api_key="not-checked", max_retries=0, timeout=10) as c:
        yield c


def test_speech_create_returns_a_wav(client):
    audio = client.audio.speech.create(model="tts-1", voice="tone", input=TEXT, response_format="wav", speed=1.0)
    wav, sr = sf.read(io.BytesIO(audio.read()), dtype="float32")
    assert sr == 22050 and wav.size == int(len(TEXT) * SECONDS_PER_CHAR * sr)


def test_stock_openai_voice_names_work_unchanged(client):
    audio = client.audio.speech.create(model="tts-1", voice="alloy", input=TEXT, response_format="pcm")
    assert len(audio.read()) == 2 * int(len(TEXT) * SECONDS_PER_CHAR * 22050)


def test_speech_create_default_format_decodes(client):
    audio = client.audio.speech.create(model="tts-1", voice="tone", input=TEXT)
    wav, sr = sf.read(io.BytesIO(audio.read()), dtype="float32")
    assert abs(wav.size / sr - len(TEXT) * SECONDS_PER_CHAR) < 0.1


def test_streaming_response_yields_pcm_in_pieces(client):
    with client.audio.speech.with_streaming_response.create(
            model="tts-1", voice="tone", input=TEXT, response_format="pcm", speed=2.0,
            extra_body={"stream": True}) as response:
        assert response.headers["content-type"] == "audio/pcm"
        pieces = list(response.iter_bytes(chunk_size=None))
    pcm = np.frombuffer(b"".join(pieces), dtype="<i2")
    assert pcm.size == int(len(TEXT) * SECONDS_PER_CHAR / 2.0 * 22050)
    assert len(pieces) > 1


def test_streaming_sse_with_stream_format(client):
    with client.audio.speech.with_streaming_response.create(
            model="gpt-4o-mini-tts", voice="tone", input=TEXT, response_format="pcm", stream_format="sse") as response:
        lines = [line for line in response.iter_lines() if line.startswith("data: ")]
    assert '"speech.audio.delta"' in lines[0] and '"speech.audio.done"' in lines[-1]


def test_errors_reach_the_client_as_openai_errors(client):
    with pytest.raises(openai.NotFoundError) as e:
        client.audio.speech.create(model="tts-1", voice="nobody", input=TEXT)
    assert e.value.code == "voice_not_found" and e.value.param == "voice" and "tone" in e.value.message
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.speech.create(model="tts-1", voice="tone", input=TEXT, response_format="aac")
    assert e.value.code == "unsupported_format"
    with pytest.raises(openai.BadRequestError) as e:
        client.audio.speech.create(model="tts-1", voice="tone", input=TEXT, speed=5.0)
    assert e.value.param == "speed"


def test_models_list_through_the_client(client):
    assert "tts-1" in {m.id for m in client.models.list()}

"""Serve the shipped default voice for real: whole and streamed speech come back as valid audio."""
from __future__ import annotations

import io

import httpx
import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from serve_double import live_server

from codectts.serve import create_app

TEXT = "Hello from the default voice."
MIN_SECONDS = 0.3  # five words cannot take less


@pytest.fixture(scope="module")
def default_voice():
    from codectts.infer import DEFAULT_VOICE, Synthesizer, list_voices

    if DEFAULT_VOICE not in {v["name"] for v in list_voices()}:
        pytest.skip(f"the shipped default voice {DEFAULT_VOICE!r} does not exist yet")
    return Synthesizer.load(None)  # once it exists, any loading error is a failure


@pytest.mark.slow
def test_default_voice_served_whole_and_streamed(default_voice):
    app = create_app({default_voice.name: default_voice}, max_concurrent=1)
    with TestClient(app, base_url="http://localhost") as client:
        assert client.get("/v1/voices").json()["default"] == default_voice.name
        r = client.post("/v1/audio/speech", json={"input": TEXT, "response_format": "wav"})
        assert r.status_code == 200, r.text
        wav, sr = sf.read(io.BytesIO(r.content), dtype="float32")
        assert sr == default_voice.sample_rate and wav.size / sr > MIN_SECONDS
        assert np.isfinite(wav).all() and np.abs(wav).max() > 0.01  # not silence
    app = create_app(
        {default_voice.name: default_voice}, max_concurrent=1
    )  # an app's worker pool ends with its lifespan
    with live_server(app) as url, httpx.Client(base_url=url, timeout=120) as http:
        body = {"input": TEXT, "response_format": "pcm", "stream": True}
        with http.stream("POST", "/v1/audio/speech", json=body) as r:
            assert r.status_code == 200
            data = b"".join(r.iter_raw())
        pcm = np.frombuffer(data, dtype="<i2")
        assert pcm.size / default_voice.sample_rate > MIN_SECONDS and np.abs(pcm).max() > 300

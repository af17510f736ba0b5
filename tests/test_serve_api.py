"""API contract of `codectts serve`: every field of /v1/audio/speech, every error, the listings."""
from __future__ import annotations

import base64
import io
import json
import logging

import numpy as np
import pytest
import soundfile as sf
from fastapi.testclient import TestClient
from serve_double import SECONDS_PER_CHAR, ToneSynthesizer

from codectts.errors import ConfigError
from codectts.serve import create_app
from codectts.serve.formats import encodable_formats

SPEECH = "/v1/audio/speech"
TEXT = "Hello there, general listener."
BASE = "http://localhost"  # the Host check answers localhost (TestClient's own default is "testserver")
JSON = {"content-type": "application/json"}


class Exploding(ToneSynthesizer):
    """A voice whose model fails: the client must get JSON, never the traceback."""

    def synthesize(self, text, **kw):
        raise RuntimeError("secret internal detail /home/model.py line 42")

    def stream(self, text, **kw):
        raise RuntimeError("secret internal detail /home/model.py line 42")


@pytest.fixture
def voices():
    return {"tone": ToneSynthesizer("tone", 22050), "low": ToneSynthesizer("low", 16000, description="16 kHz tone"),
            "boom": Exploding("boom")}


@pytest.fixture
def client(voices):
    with TestClient(create_app(voices, max_input_chars=200), raise_server_exceptions=False, base_url=BASE) as c:
        yield c


def expected_samples(text: str, sr: int, speed: float = 1.0) -> int:
    return int(len(text) * SECONDS_PER_CHAR / speed * sr)


def assert_error(r, status: int, code: str, param: str | None = None) -> dict:
    assert r.status_code == status, r.text
    assert r.headers["content-type"].startswith("application/json")
    err = r.json()["error"]
    assert set(err) == {"message", "type", "param", "code"}
    assert err["code"] == code and isinstance(err["message"], str) and err["message"]
    if param is not None:
        assert err["param"] == param
    assert "Traceback" not in r.text
    return err


def pcm_of(r) -> np.ndarray:
    return np.frombuffer(r.content, dtype="<i2")


# --- formats -------------------------------------------------------------------------------------

def test_wav_is_the_voice_rate_and_the_text_length(client):
    r = client.post(SPEECH, json={"model": "codectts", "input": TEXT, "voice": "tone", "response_format": "wav"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/wav"
    wav, sr = sf.read(io.BytesIO(r.content), dtype="float32")
    assert sr == 22050 == int(r.headers["x-sample-rate"])
    assert wav.size == expected_samples(TEXT, 22050)
    assert 0.25 < np.abs(wav).max() <= 0.31  # the tone's amplitude survived 16-bit encoding


def test_pcm_is_headerless_16bit_mono(client):
    r = client.post(SPEECH, json={"input": TEXT, "voice": "tone", "response_format": "pcm"})
    assert r.status_code == 200 and r.headers["content-type"] == "audio/pcm"
    wav_r = client.post(SPEECH, json={"input": TEXT, "voice": "tone", "response_format": "wav"})
    wav, _ = sf.read(io.BytesIO(wav_r.content), dtype="int16")
    assert np.array_equal(pcm_of(r), wav)


@pytest.mark.parametrize("fmt", ["flac", "mp3", "opus"])
def test_compressed_formats_decode_where_encodable(client, fmt):
    r = client.post(SPEECH, json={"input": TEXT, "voice": "tone", "response_format": fmt})
    if fmt not in encodable_formats():
        assert_error(r, 400, "unsupported_format", "response_format")
        return
    assert r.status_code == 200
    wav, sr = sf.read(io.BytesIO(r.content), dtype="float32")
    assert sr == int(r.headers["x-sample-rate"])
    seconds = len(TEXT) * SECONDS_PER_CHAR
    assert abs(wav.size / sr - seconds) < 0.06  # codec padding only


def test_default_format_is_mp3_like_openai(client):
    r = client.post(SPEECH, json={"input": TEXT})
    want = "audio/mpeg" if "mp3" in encodable_formats() else "audio/wav"
    assert r.status_code == 200 and r.headers["content-type"] == want


@pytest.mark.parametrize("fmt", ["aac", "ogg", "MP4", "wav; rm -rf /"])
def test_unsupported_format_is_400_listing_the_supported(client, fmt):
    err = assert_error(client.post(SPEECH, json={"input": TEXT, "response_format": fmt}), 400,
                       "unsupported_format", "response_format")
    assert all(f in err["message"] for f in encodable_formats())


# --- voice, model, speed, sampling ---------------------------------------------------------------

def test_default_voice_is_the_first_loaded(client, voices):
    assert client.post(SPEECH, json={"input": TEXT, "response_format": "pcm"}).status_code == 200
    assert voices["tone"].calls and not voices["low"].calls


def test_voice_selects_the_synthesizer(client, voices):
    r = client.post(SPEECH, json={"input": TEXT, "voice": "low", "response_format": "wav"})
    assert r.status_code == 200 and r.headers["x-sample-rate"] == "16000"
    assert voices["low"].calls[-1]["text"] == TEXT and not voices["tone"].calls


def test_unknown_voice_is_404_listing_the_loaded(client):
    err = assert_error(client.post(SPEECH, json={"input": TEXT, "voice": "nobody"}), 404, "voice_not_found", "voice")
    assert "nobody" in err["message"] and all(v in err["message"] for v in ("tone", "low", "boom"))


@pytest.mark.parametrize("name", ["alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage",
                                  "shimmer", "verse", "marin", "cedar"])
def test_openai_voice_names_speak_with_the_default_voice(client, voices, name):
    r = client.post(SPEECH, json={"input": TEXT, "voice": name, "response_format": "pcm"})
    assert r.status_code == 200 and voices["tone"].calls and not voices["low"].calls


def test_voice_aliases_are_configurable_and_listed(voices):
    app = create_app(voices, voice_aliases={"nova": "low", "narrator": "low"})
    with TestClient(app, base_url=BASE) as c:
        for name in ("nova", "narrator"):
            assert c.post(SPEECH, json={"input": TEXT, "voice": name, "response_format": "wav"}).headers[
                "x-sample-rate"] == "16000"
        assert c.post(SPEECH, json={"input": TEXT, "voice": "alloy", "response_format": "pcm"}).status_code == 200
        assert voices["tone"].calls  # the other OpenAI names still mean the default voice
        aliases = c.get("/v1/voices").json()["aliases"]
        assert aliases["nova"] == aliases["narrator"] == "low" and aliases["alloy"] == "tone"


def test_a_loaded_voice_wins_over_an_alias_and_bad_aliases_fail_at_start():
    echo, tone = ToneSynthesizer("echo", 16000), ToneSynthesizer("tone")
    with TestClient(create_app({"tone": tone, "echo": echo}), base_url=BASE) as c:
        assert c.post(SPEECH, json={"input": TEXT, "voice": "echo", "response_format": "pcm"}).status_code == 200
        assert echo.calls and not tone.calls
        assert "echo" not in c.get("/v1/voices").json()["aliases"]
    with pytest.raises(ConfigError, match="nobody"):
        create_app({"tone": tone}, voice_aliases={"nova": "nobody"})


@pytest.mark.parametrize("model", ["codectts", "tts-1", "tts-1-hd", "gpt-4o-mini-tts"])
def test_known_model_names_are_accepted(client, model):
    assert client.post(SPEECH, json={"model": model, "input": TEXT, "response_format": "pcm"}).status_code == 200


def test_unknown_model_is_404(client):
    err = assert_error(client.post(SPEECH, json={"model": "whisper-1", "input": TEXT}), 404, "model_not_found", "model")
    assert "tts-1" in err["message"]


@pytest.mark.parametrize("speed", [0.25, 0.5, 2, 4.0])
def test_speed_reaches_the_synthesizer_and_changes_length(client, voices, speed):
    r = client.post(SPEECH, json={"input": TEXT, "speed": speed, "response_format": "pcm"})
    assert r.status_code == 200
    assert voices["tone"].calls[-1]["speed"] == speed
    assert pcm_of(r).size == expected_samples(TEXT, 22050, speed)


@pytest.mark.parametrize("speed", [0.24, 4.01, 0, -1, 100, "fast", None, True])
def test_speed_out_of_range_or_wrong_type_is_400(client, speed):
    assert_error(client.post(SPEECH, json={"input": TEXT, "speed": speed}), 400, "invalid_value", "speed")


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_speed_is_400(client, token):
    body = f'{{"input": "hi", "speed": {token}}}'
    assert_error(client.post(SPEECH, content=body, headers=JSON), 400, "invalid_value", "speed")


def test_sampling_knobs_reach_the_synthesizer(client, voices):
    body = {"input": TEXT, "temperature": 0.7, "top_k": 20, "top_p": 0.9, "seed": 123, "response_format": "pcm"}
    assert client.post(SPEECH, json=body).status_code == 200
    call = voices["tone"].calls[-1]
    assert (call["temperature"], call["top_k"], call["top_p"], call["seed"]) == (0.7, 20, 0.9, 123)


@pytest.mark.parametrize("field,value", [("temperature", 0), ("temperature", 11), ("top_k", 0), ("top_k", 1.5),
                                         ("top_p", 0), ("top_p", 1.1), ("seed", -1), ("seed", "7")])
def test_bad_sampling_knobs_are_400(client, field, value):
    assert_error(client.post(SPEECH, json={"input": TEXT, field: value}), 400, "invalid_value", field)


def test_unknown_fields_and_instructions_are_ignored(client):
    body = {"input": TEXT, "instructions": "Speak cheerfully.", "lang_code": "a", "volume_multiplier": 2,
            "response_format": "pcm"}
    assert client.post(SPEECH, json=body).status_code == 200


# --- input limits --------------------------------------------------------------------------------

@pytest.mark.parametrize("text", ["", "   ", "\n\t "])
def test_empty_input_is_400(client, text):
    assert_error(client.post(SPEECH, json={"input": text}), 400, "empty_input", "input")


def test_missing_input_is_400(client):
    assert_error(client.post(SPEECH, json={"voice": "tone"}), 400, "invalid_value", "input")


def test_input_at_the_limit_is_served_and_one_more_is_413(client):
    ok = client.post(SPEECH, json={"input": "a" * 200, "response_format": "pcm"})
    assert ok.status_code == 200
    err = assert_error(client.post(SPEECH, json={"input": "a" * 201}), 413, "input_too_long", "input")
    assert "200" in err["message"] and "201" in err["message"]


def test_default_limit_is_openais_4096(voices):
    with TestClient(create_app(voices), base_url=BASE) as c:
        assert c.get("/health").json()["max_input_chars"] == 4096
        assert_error(c.post(SPEECH, json={"input": "a" * 4097}), 413, "input_too_long", "input")


def test_huge_body_is_413_before_parsing(client):
    assert_error(client.post(SPEECH, content=b"{" + b" " * 10_000_000 + b"}", headers=JSON), 413, "request_too_large")


def test_unspeakable_input_is_400_not_500(client):
    for body in ({"input": "!!! ???"}, {"input": "!!! ???", "stream": True, "response_format": "pcm"}):
        assert_error(client.post(SPEECH, json=body), 400, "invalid_input", "input")


def test_unpaired_surrogate_is_400(client):
    r = client.post(SPEECH, content=b'{"input": "bad \\ud800 text"}', headers=JSON)
    assert_error(r, 400, "invalid_value", "input")


def test_odd_unicode_that_is_valid_is_spoken(client):
    text = "Caf\u00e9 na\u00efve \u0421\u043b\u0430\u0432\u0430 \u65e5\u672c \U0001f600 e\u0301 \u200b end"
    assert client.post(SPEECH, json={"input": text, "response_format": "pcm"}).status_code == 200


# --- malformed requests --------------------------------------------------------------------------

@pytest.mark.parametrize("body", [b"", b"{", b"not json", b"\xff\xfe{}", b'{"input": "a",}'])
def test_malformed_json_is_400(client, body):
    assert_error(client.post(SPEECH, content=body, headers=JSON), 400, "invalid_json")


@pytest.mark.parametrize("body", [b"[]", b'"hello"', b"42", b"null"])
def test_non_object_json_is_400(client, body):
    assert_error(client.post(SPEECH, content=body, headers=JSON), 400, "invalid_json")


@pytest.mark.parametrize("field,value", [("input", 42), ("input", ["a"]), ("voice", 1), ("voice", {"id": "tone"}),
                                         ("model", None), ("response_format", 3), ("stream", "yes"),
                                         ("stream_format", "chunked")])
def test_wrong_types_are_400_naming_the_field(client, field, value):
    body = {"input": TEXT, field: value}
    assert_error(client.post(SPEECH, json=body), 400, "invalid_value", field)


def test_deeply_nested_json_is_400(client):
    body = '{"input": "hi", "x": ' + "[" * 100_000 + "]" * 100_000 + "}"
    r = client.post(SPEECH, content=body, headers=JSON)
    assert r.status_code in (400, 413) and "error" in r.json()


@pytest.mark.parametrize("content_type", [None, "text/plain", "text/plain;charset=UTF-8",
                                          "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                                          "application/jsonx", "application/x-json"])
def test_only_json_bodies_are_accepted(client, voices, content_type):
    """What a web page may POST cross-site without a CORS preflight (text/plain, forms, no type) is
    refused before anything is generated: a page cannot make this server speak."""
    headers = {"content-type": content_type} if content_type else {}
    body = json.dumps({"input": TEXT, "response_format": "pcm"})
    err = assert_error(client.post(SPEECH, content=body, headers=headers), 415, "unsupported_media_type")
    assert "application/json" in err["message"]
    assert not voices["tone"].calls


@pytest.mark.parametrize("content_type", ["application/json", "Application/JSON", "application/json; charset=utf-8"])
def test_json_content_type_in_any_spelling_is_accepted(client, content_type):
    body = json.dumps({"input": TEXT, "response_format": "pcm"})
    assert client.post(SPEECH, content=body, headers={"content-type": content_type}).status_code == 200


# --- streaming through the contract (timing is tested against a live server) ---------------------

FLAGS = [{"stream": True}, {"stream_format": "audio"}, {"stream": True, "stream_format": "audio"}]


@pytest.mark.parametrize("flag", FLAGS)
def test_streamed_pcm_equals_whole_pcm(client, flag):
    whole = client.post(SPEECH, json={"input": TEXT, "response_format": "pcm"})
    streamed = client.post(SPEECH, json={"input": TEXT, "response_format": "pcm", **flag})
    assert streamed.status_code == 200 and "content-length" not in streamed.headers
    assert streamed.content == whole.content


def test_stream_false_with_audio_format_returns_a_whole_file(client):
    r = client.post(SPEECH, json={"input": TEXT, "response_format": "wav", "stream": False, "stream_format": "audio"})
    assert r.status_code == 200 and int(r.headers["content-length"]) == len(r.content)


def test_streamed_wav_parses_with_unknown_length_header(client):
    r = client.post(SPEECH, json={"input": TEXT, "response_format": "wav", "stream": True})
    wav, sr = sf.read(io.BytesIO(r.content), dtype="float32")
    assert sr == 22050 and wav.size == expected_samples(TEXT, 22050)


@pytest.mark.parametrize("fmt", ["mp3", "opus"])
def test_streamed_compressed_audio_decodes(client, fmt):
    if fmt not in encodable_formats():
        pytest.skip(f"libsndfile here cannot encode {fmt}")
    r = client.post(SPEECH, json={"input": TEXT, "response_format": fmt, "stream": True})
    wav, sr = sf.read(io.BytesIO(r.content), dtype="float32")
    assert abs(wav.size / sr - len(TEXT) * SECONDS_PER_CHAR) < 0.1


def test_flac_cannot_stream(client):
    assert_error(
        client.post(SPEECH, json={"input": TEXT, "response_format": "flac", "stream": True}),
        400,
        "unsupported_format",
        "response_format",
    )


def test_sse_events_carry_base64_audio_then_done(client):
    whole = client.post(SPEECH, json={"input": TEXT, "response_format": "pcm"})
    r = client.post(SPEECH, json={"input": TEXT, "response_format": "pcm", "stream_format": "sse"})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(block[len("data: ") :]) for block in r.text.strip().split("\n\n")]
    assert [e["type"] for e in events[:-1]] == ["speech.audio.delta"] * (len(events) - 1)
    assert events[-1]["type"] == "speech.audio.done" and len(events) > 2
    assert b"".join(base64.b64decode(e["audio"]) for e in events[:-1]) == whole.content


def test_sse_with_stream_false_is_400(client):
    assert_error(
        client.post(SPEECH, json={"input": TEXT, "stream": False, "stream_format": "sse"}),
        400,
        "invalid_value",
        "stream",
    )


# --- server-side failures ------------------------------------------------------------------------


@pytest.mark.parametrize("extra", [{}, {"stream": True, "response_format": "pcm"}])
def test_model_failure_is_json_500_without_internals(client, extra):
    r = client.post(SPEECH, json={"input": TEXT, "voice": "boom", **extra})
    err = assert_error(r, 500, "synthesis_failed")
    assert "secret" not in r.text and "model.py" not in r.text
    assert r.headers["x-request-id"] in err["message"]


def test_slots_are_released_after_errors(client):
    for _ in range(5):  # more than max_concurrent: a leak would turn these into 429s
        client.post(SPEECH, json={"input": TEXT, "voice": "boom"})
        client.post(SPEECH, json={"input": "!!!"})
    assert client.get("/health").json()["generations_active"] == 0
    assert client.post(SPEECH, json={"input": TEXT, "response_format": "pcm"}).status_code == 200


# --- other routes --------------------------------------------------------------------------------


def test_models_list_is_openai_shaped(client):
    body = client.get("/v1/models").json()
    assert body["object"] == "list"
    assert {m["id"] for m in body["data"]} >= {"codectts", "tts-1"}
    assert all(m["object"] == "model" for m in body["data"])


@pytest.mark.parametrize("path", ["/v1/voices", "/v1/audio/voices"])
def test_voices_list_what_is_loaded(client, path):
    body = client.get(path).json()
    assert body["default"] == "tone"
    assert [(v["name"], v["sample_rate"]) for v in body["voices"]] == [("tone", 22050), ("low", 16000), ("boom", 22050)]
    assert body["voices"][1]["description"] == "16 kHz tone"


def test_health(client):
    body = client.get("/health").json()
    assert body["status"] == "ok" and body["voices"] == ["tone", "low", "boom"]
    assert body["max_concurrent"] >= 1 and body["generations_active"] == 0
    assert "wav" in body["formats"] and "pcm" in body["formats"]


def test_unknown_route_and_method_are_json(client):
    assert_error(client.get("/v1/nope"), 404, "not_found")
    assert_error(client.get(SPEECH), 405, "method_not_allowed")


def test_web_page_has_its_controls(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    for needle in ('id="text"', 'id="voice"', 'id="speed"', 'id="play"', 'id="download"', "/static/app.js"):
        assert needle in page.text
    js = client.get("/static/app.js")
    assert js.status_code == 200 and "/v1/audio/speech" in js.text
    assert client.get("/static/style.css").status_code == 200


def test_openapi_schema_documents_the_request(client):
    schema = client.get("/openapi.json").json()
    body = schema["paths"]["/v1/audio/speech"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert {"input", "voice", "speed", "stream_format", "stream"} <= set(body["properties"])


def test_access_log_is_one_json_line_per_request(client, caplog):
    with caplog.at_level(logging.INFO, logger="codectts.serve.access"):
        r = client.post(SPEECH, json={"input": TEXT, "voice": "low", "response_format": "wav"})
        client.post(SPEECH, json={"input": TEXT, "voice": "nobody"})
    records = [json.loads(rec.getMessage()) for rec in caplog.records if rec.name == "codectts.serve.access"]
    assert len(records) == 2
    ok, missing = records
    assert ok["status"] == 200 and ok["voice"] == "low" and ok["format"] == "wav" and ok["chars"] == len(TEXT)
    assert ok["request_id"] == r.headers["x-request-id"] and ok["bytes"] == len(r.content) and ok["complete"]
    assert ok["audio_s"] == pytest.approx(len(TEXT) * SECONDS_PER_CHAR, abs=0.01)
    assert missing["status"] == 404 and missing["path"] == SPEECH


def test_create_app_checks_its_arguments():
    with pytest.raises(ConfigError):
        create_app({})
    with pytest.raises(ConfigError):
        create_app({"t": ToneSynthesizer()}, max_concurrent=0)
    with pytest.raises(ConfigError):
        create_app({"t": ToneSynthesizer()}, max_input_chars=0)
    with pytest.raises(ConfigError):
        create_app({"t": ToneSynthesizer()}, request_timeout_s=0)


def test_serve_command_is_registered_and_binds_localhost_by_default():
    from typer.testing import CliRunner

    from codectts.cli import app
    from codectts.serve.cli import is_loopback

    out = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0
    for opt in ("--voice", "--host", "--port", "--max-concurrent", "--max-input-chars", "--timeout"):
        assert opt in out.output
    assert "127.0.0.1" in out.output
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.2") and not is_loopback("example.com")


class CloningTone(ToneSynthesizer):
    """A tone voice that clones: `reference(clip, text)` reads the clip, as a real cloning voice does."""

    class engine:  # noqa: N801 - what cloned_voices looks at
        clones = True

    def reference(self, clip, text):
        return ("ref", sf.read(clip)[0].size, text)


def test_serve_clone_names_a_clips_speaker_as_a_voice(tmp_path):
    """`serve --clone ann=ann.wav`: voice 'ann' is the first cloning voice given ann.wav's reference (made once);
    bad specs, a missing transcript and a server without a cloning voice are refused by name."""
    from codectts.serve.cli import cloned_voices, parse_clones

    sf.write(tmp_path / "ann.wav", np.zeros(1600, np.float32), 16000)
    (tmp_path / "ann.txt").write_text("What ann says.\n")
    sf.write(tmp_path / "bob.wav", np.zeros(800, np.float32), 16000)
    clones = parse_clones([f"ann={tmp_path / 'ann.wav'}"])
    assert clones == {"ann": (tmp_path / "ann.wav", "What ann says.")}
    for spec, why in (("ann", "NAME=CLIP"), ("=x.wav", "NAME=CLIP"), (f"ann={tmp_path / 'no.wav'}", "no clip"),
                      (f"bob={tmp_path / 'bob.wav'}", "bob.txt")):
        with pytest.raises(ConfigError, match=why):
            parse_clones([spec])
    plain, base = ToneSynthesizer("plain"), CloningTone("clone")
    with pytest.raises(ConfigError, match="voice that clones"):
        cloned_voices(clones, {"plain": plain})
    with pytest.raises(ConfigError, match="already loaded"):
        cloned_voices({"plain": clones["ann"]}, {"plain": plain, "clone": base})
    voices = {"plain": plain, "clone": base, **cloned_voices(clones, {"plain": plain, "clone": base})}
    with TestClient(create_app(voices), base_url=BASE) as c:
        listed = {v["name"]: v["description"] for v in c.get("/v1/voices").json()["voices"]}
        assert listed["ann"] == "clone speaking as the speaker of ann.wav"
        for stream in (False, True):
            r = c.post(SPEECH, json={"model": "tts-1", "input": TEXT, "voice": "ann", "response_format": "wav",
                                     "stream": stream})
            assert r.status_code == 200, r.text
        r = c.post(SPEECH, json={"model": "tts-1", "input": TEXT, "voice": "clone", "response_format": "wav"})
        assert r.status_code == 200
    assert [(call["kind"], call.get("reference")) for call in base.calls] == [
        ("synthesize", ("ref", 1600, "What ann says.")), ("stream", ("ref", 1600, "What ann says.")),
        ("synthesize", None)]

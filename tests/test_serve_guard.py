"""What keeps the server safe from web pages and misbehaving clients: the Host check (DNS rebinding),
a body that trickles in (408), a client that stops reading (dropped), the CLI's limits and aliases."""
from __future__ import annotations

import asyncio
import json
import time

import pytest
from fastapi.testclient import TestClient
from serve_double import ToneSynthesizer

from codectts.errors import ConfigError
from codectts.serve import ServeConfig, create_app
from codectts.serve.middleware import host_name

SPEECH = "/v1/audio/speech"
TEXT = "Hello there, general listener."
WAIT_S = 10.0


@pytest.fixture
def tone():
    return ToneSynthesizer()


def client_for(app) -> TestClient:
    return TestClient(app, base_url="http://localhost", raise_server_exceptions=False)


@pytest.mark.parametrize("host", ["localhost", "localhost:8000", "LOCALHOST.:8000", "127.0.0.1", "127.0.0.1:8000",
                                  "[::1]:8000", "[::1]", "192.168.1.20:8000", "10.0.0.7"])
def test_localhost_and_ip_addresses_are_answered(tone, host):
    with client_for(create_app({"tone": tone})) as c:
        assert c.get("/health", headers={"host": host}).status_code == 200
        r = c.post(SPEECH, json={"input": TEXT, "response_format": "pcm"}, headers={"host": host})
        assert r.status_code == 200


@pytest.mark.parametrize("host", ["evil.example", "evil.example:8000", "localhost.evil.example",
                                  "127.0.0.1.nip.io:8000", "testserver", "[::1"])
def test_other_host_names_get_421_before_anything_runs(tone, host):
    """A page on evil.example that re-points its name at 127.0.0.1 still sends Host: evil.example."""
    with client_for(create_app({"tone": tone})) as c:
        for r in (c.get("/v1/voices", headers={"host": host}), c.get("/", headers={"host": host}),
                  c.post(SPEECH, json={"input": TEXT}, headers={"host": host})):
            assert r.status_code == 421, r.text
            err = r.json()["error"]
            assert err["code"] == "host_not_allowed" and "--allow-host" in err["message"]
    assert not tone.calls


def test_allowed_hosts_extend_the_defaults(tone):
    with client_for(create_app({"tone": tone}, allowed_hosts=("MyBox.lan",))) as c:
        assert c.get("/health", headers={"host": "mybox.lan:8000"}).status_code == 200
        assert c.get("/health", headers={"host": "localhost"}).status_code == 200
        assert c.get("/health", headers={"host": "other.lan"}).status_code == 421
    with client_for(create_app({"tone": tone}, allowed_hosts=("*",))) as c:
        assert c.get("/health", headers={"host": "anything.example"}).status_code == 200


def test_host_name_parsing():
    assert host_name("Example.COM:8000") == "example.com"
    assert host_name("[::1]:8000") == "::1" and host_name("::1") == "::1"
    assert host_name("localhost.") == "localhost" and host_name(" 127.0.0.1 ") == "127.0.0.1"


# --- ASGI-level: a body that never finishes, a client that never reads ----------------------------

def scope_for(body: bytes, path: str = SPEECH) -> dict:
    headers = [(b"host", b"localhost"), (b"content-type", b"application/json"),
               (b"content-length", str(len(body)).encode())]
    return {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "http_version": "1.1",
            "method": "POST", "scheme": "http", "path": path, "raw_path": path.encode(), "query_string": b"",
            "root_path": "", "headers": headers, "client": ("127.0.0.1", 40000), "server": ("127.0.0.1", 8000)}


def test_a_body_that_stops_arriving_gets_408(tone):
    app = create_app({"tone": tone}, read_timeout_s=0.2)
    body = json.dumps({"input": TEXT}).encode()
    sent: list[dict] = []

    async def run() -> None:
        pieces = [{"type": "http.request", "body": body[:5], "more_body": True}]

        async def receive():
            if pieces:
                return pieces.pop()
            await asyncio.sleep(3600)  # the rest never comes (the connection stays open)

        async def send(message):
            sent.append(message)

        await asyncio.wait_for(app(scope_for(body), receive, send), WAIT_S)

    t0 = time.monotonic()
    asyncio.run(run())
    assert time.monotonic() - t0 < 5
    assert sent[0]["status"] == 408
    assert json.loads(sent[1]["body"])["error"]["code"] == "request_timeout"
    assert not tone.calls


def test_a_client_that_stops_reading_is_dropped_and_the_generation_stops(tone):
    """The stream's first bytes go out, then the client's socket never drains: the response is dropped
    after send_timeout_s and the worker stops instead of waiting for the request timeout."""
    app = create_app({"tone": tone}, send_timeout_s=0.3, request_timeout_s=60, stream_buffer=2)
    body = json.dumps({"input": "word " * 800, "response_format": "pcm", "stream": True}).encode()
    sent: list[dict] = []

    async def run() -> float:
        requests = [{"type": "http.request", "body": body, "more_body": False}]

        async def receive():
            if requests:
                return requests.pop()
            await asyncio.sleep(3600)  # no disconnect either: the client just hangs

        async def send(message):
            sent.append(message)
            if message["type"] == "http.response.body" and len(sent) > 2:
                await asyncio.sleep(3600)  # the socket is full and stays full

        t0 = time.monotonic()
        await asyncio.wait_for(app(scope_for(body), receive, send), WAIT_S)
        return time.monotonic() - t0

    assert asyncio.run(run()) < 5
    assert sent[0]["status"] == 200 and sent[-1].get("more_body", False)  # cut, not finished
    assert tone.closed.wait(WAIT_S) and not tone.finished.is_set()
    deadline = time.monotonic() + WAIT_S
    while app.state.service.slots.active and time.monotonic() < deadline:
        time.sleep(0.01)
    assert app.state.service.slots.active == 0


# --- configuration --------------------------------------------------------------------------------

@pytest.mark.parametrize("field,value", [("read_timeout_s", 0), ("send_timeout_s", -1), ("stream_buffer", 0),
                                         ("max_concurrent", 0)])
def test_limits_are_checked(field, value):
    with pytest.raises(ConfigError, match=field):
        ServeConfig(**{field: value})


def test_cli_options_and_alias_parsing():
    from typer.testing import CliRunner

    from codectts.cli import app
    from codectts.serve.cli import UVICORN_LIMITS, parse_aliases

    out = CliRunner().invoke(app, ["serve", "--help"], env={"COLUMNS": "200"})
    assert out.exit_code == 0 and "--allow-host" in out.output and "--voice-alias" in out.output
    assert parse_aliases(["nova=joe", " alloy = joe "]) == {"nova": "joe", "alloy": "joe"}
    for bad in ("nova", "=joe", "nova="):
        with pytest.raises(ConfigError, match="NAME=VOICE"):
            parse_aliases([bad])
    assert UVICORN_LIMITS["timeout_keep_alive"] > 0 and UVICORN_LIMITS["h11_max_incomplete_event_size"] > 0
    bad = CliRunner().invoke(app, ["serve", "--voice-alias", "nova"])  # refused before any voice loads
    assert isinstance(bad.exception, ConfigError) and "NAME=VOICE" in str(bad.exception)


def test_serve_max_audio_s_refuses_long_plans_before_generating(monkeypatch):
    """`serve --max-audio-s` bounds what one request may plan: a text planned past it is a 400 at once,
    instead of a worker busy until the request timeout."""
    import uvicorn
    from fastapi.testclient import TestClient
    from typer.testing import CliRunner

    from codectts.cli import app

    served = {}
    monkeypatch.setattr(uvicorn, "run", lambda app_, **kw: served.update(app=app_))
    out = CliRunner().invoke(app, ["serve", "--max-audio-s", "3"])
    assert out.exit_code == 0, out.output
    client = TestClient(served["app"], base_url="http://localhost")
    long = client.post("/v1/audio/speech", json={"input": "This sentence is long enough to need more than "
                                                          "three seconds of speech to say aloud.",
                                                 "response_format": "wav"})
    assert long.status_code == 400 and "max_audio_s" in long.json()["error"]["message"]
    assert client.post("/v1/audio/speech", json={"input": "Yes.", "response_format": "wav"}).status_code == 200

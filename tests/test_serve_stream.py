"""Against a live uvicorn server: audio leaves before generation ends, disconnects stop the model,
the concurrency limit answers 429 + Retry-After, the event loop stays free, timeouts hold."""
from __future__ import annotations

import asyncio
import threading
import time

import httpx
import pytest
from serve_double import ToneSynthesizer, live_server

from codectts.serve import create_app

SPEECH = "/v1/audio/speech"
LONG_TEXT = "This sentence is long enough to need many chunks of tone. " * 4
WAIT_S = 10.0  # generous bound for events that should take milliseconds


def wait_until(predicate, timeout: float = WAIT_S) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


@pytest.fixture
def gated():
    """A voice that stops after its first chunk until the test opens the gate."""
    synth = ToneSynthesizer()
    synth.gate = threading.Event()
    yield synth
    synth.gate.set()  # never leave a worker thread blocked


@pytest.mark.parametrize("body", [{"stream": True, "response_format": "pcm"},
                                  {"stream_format": "audio", "response_format": "wav"},
                                  {"stream_format": "sse", "response_format": "pcm"}])
def test_first_chunk_arrives_before_generation_ends(gated, body):
    with live_server(create_app({"tone": gated})) as url, httpx.Client(base_url=url, timeout=WAIT_S) as http:
        with http.stream("POST", SPEECH, json={"input": LONG_TEXT, **body}) as r:
            assert r.status_code == 200
            chunks = r.iter_raw()
            first = next(chunks)
            # The model is still parked after its first chunk: these bytes cannot be the whole utterance.
            assert first and not gated.finished.is_set()
            gated.gate.set()
            rest = b"".join(chunks)
        assert gated.finished.wait(WAIT_S)
        assert len(rest) > len(first)


def test_client_disconnect_stops_generation_and_frees_the_slot(gated):
    app = create_app({"tone": gated}, max_concurrent=1)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=WAIT_S) as http:
        with http.stream("POST", SPEECH, json={"input": LONG_TEXT, "stream": True, "response_format": "pcm"}) as r:
            assert next(r.iter_raw())
        # the client hung up mid-utterance; let the model go on and see it is told to stop
        time.sleep(0.2)
        gated.gate.set()
        assert gated.closed.wait(WAIT_S) and not gated.finished.is_set()
        assert wait_until(lambda: http.get("/health").json()["generations_active"] == 0)
        assert http.post(SPEECH, json={"input": "hello", "response_format": "pcm"}).status_code == 200


def test_beyond_max_concurrent_is_429_with_retry_after(gated):
    app = create_app({"tone": gated}, max_concurrent=1)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=WAIT_S) as http:
        with http.stream("POST", SPEECH, json={"input": LONG_TEXT, "stream": True, "response_format": "pcm"}) as r:
            assert next(r.iter_raw())  # one generation is running and holds the only slot
            busy = http.post(SPEECH, json={"input": "hello", "response_format": "pcm"})
            assert busy.status_code == 429
            assert int(busy.headers["retry-after"]) >= 1
            assert busy.json()["error"]["code"] == "too_many_concurrent_requests"
            gated.gate.set()
            r.close()
        assert wait_until(lambda: http.get("/health").json()["generations_active"] == 0)
        assert http.post(SPEECH, json={"input": "hello", "response_format": "pcm"}).status_code == 200


def test_requests_below_the_limit_run_together_without_blocking_the_loop(gated):
    app = create_app({"tone": gated}, max_concurrent=3)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=WAIT_S) as http:
        statuses: list[int] = []

        def speak() -> None:
            statuses.append(http.post(SPEECH, json={"input": LONG_TEXT, "response_format": "pcm"}).status_code)

        threads = [threading.Thread(target=speak) for _ in range(3)]
        for t in threads:
            t.start()
        # all three generations are now parked inside the model; if any ran on the event loop,
        # /health could not answer until the gate opens
        assert wait_until(lambda: gated.active == 3)
        health = http.get("/health", timeout=5.0)
        assert health.json()["generations_active"] == 3
        gated.gate.set()
        for t in threads:
            t.join(WAIT_S)
        assert statuses == [200, 200, 200] and gated.max_active == 3


def test_whole_file_request_times_out_with_504(gated):
    app = create_app({"tone": gated}, request_timeout_s=0.3, max_concurrent=1)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=WAIT_S) as http:
        t0 = time.perf_counter()
        r = http.post(SPEECH, json={"input": LONG_TEXT, "response_format": "pcm"})
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        assert time.perf_counter() - t0 < 5.0  # well under the parked model's forever
        # the abandoned work holds its slot until it really ends: no oversubscription of the cores
        assert http.get("/health").json()["generations_active"] == 1
        gated.gate.set()
        assert wait_until(lambda: http.get("/health").json()["generations_active"] == 0)


def test_stream_is_cut_at_the_timeout_and_the_model_stops(gated):
    app = create_app({"tone": gated}, request_timeout_s=0.5)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=WAIT_S) as http:
        t0 = time.perf_counter()
        with http.stream("POST", SPEECH, json={"input": LONG_TEXT, "stream_format": "sse",
                                               "response_format": "pcm"}) as r:
            text = r.read().decode()
        assert time.perf_counter() - t0 < 5.0
        assert '"speech.audio.delta"' in text and '"code": "timeout"' in text and "speech.audio.done" not in text
        gated.gate.set()
        assert gated.closed.wait(WAIT_S)
        assert wait_until(lambda: http.get("/health").json()["generations_active"] == 0)


# --- whole files stop when abandoned --------------------------------------------------------------

VERY_LONG_TEXT = "word " * 600  # 30 s of tone: 300 chunks, each a "sentence" the double may stop before


def test_whole_file_generation_stops_after_a_504_and_frees_its_slot():
    slow = ToneSynthesizer(chunk_delay_s=0.05)  # 300 x 0.05 s = 15 s of work if nobody stops it
    app = create_app({"tone": slow}, request_timeout_s=0.5, max_concurrent=1)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=WAIT_S) as http:
        t0 = time.perf_counter()
        r = http.post(SPEECH, json={"input": VERY_LONG_TEXT, "response_format": "pcm"})
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        assert slow.closed.wait(WAIT_S) and not slow.finished.is_set()
        assert wait_until(lambda: http.get("/health").json()["generations_active"] == 0)
        assert time.perf_counter() - t0 < 5.0  # far from the 15 s the generation would have run
        assert http.post(SPEECH, json={"input": "hello", "response_format": "pcm"}).status_code == 200


def test_whole_file_generation_stops_when_the_client_leaves(caplog):
    slow = ToneSynthesizer(chunk_delay_s=0.05)
    app = create_app({"tone": slow}, request_timeout_s=60, max_concurrent=1)
    with live_server(app) as url, httpx.Client(base_url=url, timeout=WAIT_S) as http:
        t0 = time.perf_counter()
        with pytest.raises(httpx.ReadTimeout):  # the client gives up and closes its connection
            http.post(SPEECH, json={"input": VERY_LONG_TEXT, "response_format": "pcm"}, timeout=0.5)
        assert slow.closed.wait(WAIT_S) and not slow.finished.is_set()
        assert wait_until(lambda: http.get("/health").json()["generations_active"] == 0)
        assert time.perf_counter() - t0 < 5.0
        assert http.post(SPEECH, json={"input": "hello", "response_format": "pcm"}).status_code == 200


# --- the stream buffer is bounded -----------------------------------------------------------------

def test_a_slow_reader_holds_back_the_generation_instead_of_filling_memory():
    """SpeechService directly: take one piece, pause, and the worker has made at most the buffer's worth."""
    from codectts.serve import ServeConfig, SpeechRequest, SpeechService

    async def run() -> None:
        tone = ToneSynthesizer()
        service = SpeechService({"tone": tone}, ServeConfig(stream_buffer=4))
        req = SpeechRequest(input=VERY_LONG_TEXT, response_format="pcm", stream=True)
        job = service.prepare(req)
        pieces = await service.stream(job)
        first = await anext(pieces)
        await asyncio.sleep(0.5)  # plenty for an unbounded worker to make all 300 chunks
        assert tone.chunks_made <= 4 + 2, tone.chunks_made  # buffer + the piece taken + the one waiting
        received = len(first) + sum([len(p) async for p in pieces])
        assert received == 2 * int(len(VERY_LONG_TEXT.strip()) * 0.01 * tone.sample_rate)
        assert tone.finished.is_set() and service.slots.active == 0
        # a stream closed half way (client gone) stops its worker and frees the slot
        pieces = await service.stream(service.prepare(req))
        await anext(pieces)
        await pieces.aclose()
        assert await asyncio.to_thread(tone.closed.wait, WAIT_S)
        for _ in range(200):
            if service.slots.active == 0:
                break
            await asyncio.sleep(0.01)
        assert service.slots.active == 0
        service.close()

    asyncio.run(run())

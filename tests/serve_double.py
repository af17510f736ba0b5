"""A stand-in voice for the server tests and benchmark: a tone whose length follows the text and speed.

It implements the `Synthesizer` interface the server needs (name, sample_rate, synthesize, stream)
without any model, so the HTTP layer can be tested in milliseconds. `gate` lets a test hold the
stream after its first chunk, to prove audio leaves the server before generation ends; `synthesize`
honours `should_stop` between chunks (a real voice asks between sentences).
"""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator

import numpy as np

from codectts.errors import GenerationError, TextError
from codectts.text import normalize_text
from codectts.text.normalize import has_speakable

SECONDS_PER_CHAR = 0.01  # 100 characters -> 1 s of audio at speed 1
CHUNK_S = 0.1
TONE_HZ = 220.0
AMPLITUDE = 0.3


class ToneSynthesizer:
    """Thread-safe: no state changes after construction except counters under a lock."""

    def __init__(self, name: str = "tone", sample_rate: int = 22050, *, chunk_delay_s: float = 0.0,
                 description: str = "test tone", record_calls: bool = True) -> None:
        self.name, self.sample_rate, self.description = name, sample_rate, description
        self.chunk_delay_s = chunk_delay_s
        self.record_calls = record_calls  # off for load benchmarks: the record grows with every request
        self.gate: threading.Event | None = None  # if given: stream waits on it after its first chunk,
        # synthesize before it returns
        self.calls: list[dict] = []
        self.finished = threading.Event()  # set when a generation makes its last chunk
        self.closed = threading.Event()  # set when a generation ends early (client went away, timeout)
        self.active = 0
        self.max_active = 0
        self.chunks_made = 0  # streamed chunks handed out so far
        self._lock = threading.Lock()

    def _samples(self, text: str, speed: float) -> int:
        spoken = normalize_text(text)
        if not has_speakable(spoken):
            raise TextError("input holds nothing speakable (no letters)")
        return max(1, int(len(spoken) * SECONDS_PER_CHAR / speed * self.sample_rate))

    def _tone(self, start: int, n: int) -> np.ndarray:
        t = (np.arange(start, start + n) / self.sample_rate).astype(np.float64)
        return (AMPLITUDE * np.sin(2 * np.pi * TONE_HZ * t)).astype(np.float32)

    def _enter(self, kind: str, text: str, kwargs: dict) -> None:
        with self._lock:
            if self.record_calls:
                self.calls.append({"kind": kind, "text": text, **kwargs})
            self.active += 1
            self.max_active = max(self.max_active, self.active)

    def _leave(self) -> None:
        with self._lock:
            self.active -= 1

    def synthesize(self, text: str, *, speed: float = 1.0, temperature: float | None = None,
                   top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                   should_stop: Callable[[], bool] | None = None, reference=None) -> tuple[np.ndarray, int]:
        n = self._samples(text, speed)
        self._enter(
            "synthesize",
            text,
            {"speed": speed, "temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed,
             **({"reference": reference} if reference is not None else {})},
        )
        try:
            for _ in range(0, n, int(CHUNK_S * self.sample_rate)):  # a chunk stands for a sentence here:
                if should_stop is not None and should_stop():  # the real voice asks between sentences
                    self.closed.set()
                    raise GenerationError("generation stopped")
                if self.chunk_delay_s:
                    time.sleep(self.chunk_delay_s)
            if self.gate is not None:
                self.gate.wait()
            self.finished.set()
            return self._tone(0, n), self.sample_rate
        finally:
            self._leave()

    def stream(
        self,
        text: str,
        *,
        speed: float = 1.0,
        temperature: float | None = None,
        top_k: int | None = None,
        top_p: float | None = None,
        seed: int | None = None,
        reference=None,
    ) -> Iterator[np.ndarray]:
        n = self._samples(text, speed)  # raises before the first chunk, like a real voice
        return self._stream(
            n, text, {"speed": speed, "temperature": temperature, "top_k": top_k, "top_p": top_p, "seed": seed,
                      **({"reference": reference} if reference is not None else {})}
        )

    def _stream(self, n: int, text: str, kwargs: dict) -> Iterator[np.ndarray]:
        self._enter("stream", text, kwargs)
        step = int(CHUNK_S * self.sample_rate)
        done = False
        try:
            for i, start in enumerate(range(0, n, step)):
                if self.chunk_delay_s:
                    time.sleep(self.chunk_delay_s)
                with self._lock:
                    self.chunks_made += 1
                yield self._tone(start, min(step, n - start))
                if i == 0 and self.gate is not None:
                    self.gate.wait()
            done = True
            self.finished.set()
        finally:
            if not done:
                self.closed.set()
            self._leave()


@contextlib.contextmanager
def live_server(app) -> Iterator[str]:
    """Run `app` under uvicorn on 127.0.0.1 and a free port in a thread; yields the base URL."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start within 10 s")
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()

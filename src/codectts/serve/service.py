"""The speech service behind the HTTP routes: loaded voices, generation slots, a worker pool, limits.

`SpeechService` knows nothing of HTTP: it checks a `SpeechRequest` against what is loaded, runs the
synthesizer in a worker thread (never on the event loop), and raises codectts errors that
`serve.errors.http_error` turns into statuses. At most `max_concurrent` generations run at once;
beyond that a request is refused at once (`ServerBusy`) instead of queueing without bound. A
generation stops early when its client goes away or its time runs out, so it frees its slot.
"""
from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from codectts.errors import ConfigError, GenerationError
from codectts.serve.errors import ClientDisconnected, GenerationTimeout, InputError, RequestError, ServerBusy, show
from codectts.serve.formats import (
    FORMATS,
    KNOWN_UNENCODABLE,
    StreamEncoder,
    encodable_formats,
    encode_full,
    output_rate,
)

log = logging.getLogger("codectts.serve")

MODEL_ID = "codectts"
# Model names OpenAI clients send by default; all mean "the voice you asked for, synthesized here".
MODEL_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
# OpenAI's built-in voice names: by default each one speaks with the default voice, so clients that
# hard-code one work unchanged (`serve --voice-alias NAME=VOICE` points one elsewhere).
OPENAI_VOICES = ("alloy", "ash", "ballad", "coral", "echo", "fable", "nova", "onyx", "sage", "shimmer", "verse",
                 "marin", "cedar")
MIN_SPEED, MAX_SPEED = 0.25, 4.0  # OpenAI's range
MAX_TEMPERATURE = 10.0
DEFAULT_MAX_INPUT_CHARS = 4096  # OpenAI's limit
DEFAULT_MAX_CONCURRENT = 2  # one generation per core on the 2-core target machine
DEFAULT_REQUEST_TIMEOUT_S = 120.0
DEFAULT_READ_TIMEOUT_S = 30.0  # to receive a request body
DEFAULT_SEND_TIMEOUT_S = 30.0  # a client that takes nothing from its socket this long is dropped
# Encoded pieces a stream may hold for a slow client before the generation waits (back-pressure):
# ~16 x 0.37 s of audio, a few hundred KiB at most.
DEFAULT_STREAM_BUFFER = 16
# A JSON string may spend up to 12 bytes per character (a surrogate pair as two \uXXXX escapes).
JSON_BYTES_PER_CHAR = 12
BODY_OVERHEAD_BYTES = 16 * 1024  # the other fields
RETRY_EMA = 0.3  # weight of the newest generation time in the Retry-After estimate
POLL_S = 0.05  # how often a waiting worker looks whether its client is still there


class Synthesizer(Protocol):
    """What the server needs from a voice (`codectts.infer.Synthesizer` fits). Must be thread-safe:
    up to `max_concurrent` calls may run at once on one object. `synthesize` calls `should_stop`
    between sentences and gives up (GenerationError) when it returns True."""

    name: str
    sample_rate: int

    def synthesize(self, text: str, *, speed: float = 1.0, temperature: float | None = None,
                   top_k: int | None = None, top_p: float | None = None, seed: int | None = None,
                   should_stop: Callable[[], bool] | None = None) -> tuple[np.ndarray, int]: ...

    def stream(self, text: str, *, speed: float = 1.0, temperature: float | None = None,
               top_k: int | None = None, top_p: float | None = None,
               seed: int | None = None) -> Iterator[np.ndarray]: ...


@dataclass(frozen=True)
class ServeConfig:
    """Server limits. `max_body_bytes` is derived: room for `max_input_chars` escaped characters.

    `voice_aliases` maps extra voice names to loaded voices; None maps OpenAI's voice names to the
    default voice. `allowed_hosts` are Host names answered besides localhost and IP addresses."""

    max_input_chars: int = DEFAULT_MAX_INPUT_CHARS
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S
    read_timeout_s: float = DEFAULT_READ_TIMEOUT_S
    send_timeout_s: float = DEFAULT_SEND_TIMEOUT_S
    stream_buffer: int = DEFAULT_STREAM_BUFFER
    allowed_hosts: tuple[str, ...] = ()
    voice_aliases: Mapping[str, str] | None = None

    def __post_init__(self) -> None:
        for name in ("max_input_chars", "max_concurrent", "stream_buffer"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1, got {getattr(self, name)}")
        for name in ("request_timeout_s", "read_timeout_s", "send_timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be > 0, got {getattr(self, name)}")

    @property
    def max_body_bytes(self) -> int:
        return self.max_input_chars * JSON_BYTES_PER_CHAR + BODY_OVERHEAD_BYTES


class SpeechRequest(BaseModel):
    """OpenAI's speech request, plus Kokoro-FastAPI's `stream` and our sampling knobs.

    Unknown fields are ignored (clients of other servers send extras); known ones are type-strict.
    """

    model_config = ConfigDict(extra="ignore", strict=True, allow_inf_nan=False)

    model: str = MODEL_ID
    input: str
    voice: str | None = None  # None: the first loaded voice
    response_format: str | None = None  # None: mp3 where it can be encoded (OpenAI's default), else wav
    speed: float = Field(1.0, ge=MIN_SPEED, le=MAX_SPEED)
    stream_format: Literal["audio", "sse"] | None = None
    stream: bool | None = None
    instructions: str | None = None  # accepted for gpt-4o-mini-tts clients; these voices have no style prompt
    temperature: float | None = Field(None, gt=0, le=MAX_TEMPERATURE)
    top_k: int | None = Field(None, ge=1)
    top_p: float | None = Field(None, gt=0, le=1)
    seed: int | None = Field(None, ge=0, lt=2**63)


@dataclass
class Job:
    """One accepted request: what to make, how to send it, and the log fields it fills in."""

    synth: Synthesizer
    text: str
    kwargs: dict[str, Any]
    fmt: str
    stream_format: Literal["audio", "sse"] | None  # None: one whole file
    log: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Speech:
    """A whole encoded file."""

    data: bytes
    sample_rate: int
    media_type: str
    fmt: str


class GenerationSlots:
    """A non-blocking counter of running generations; released from worker threads when work ends."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._active = 0
        self._lock = threading.Lock()
        self._mean_s = 1.0  # running estimate of one generation's duration, for Retry-After

    @property
    def active(self) -> int:
        return self._active

    def acquire(self) -> None:
        with self._lock:
            if self._active < self.limit:
                self._active += 1
                return
        wait = self.retry_after_s()
        raise ServerBusy(f"{self.limit} generations are already running; retry in {wait} s", wait)

    def release(self, seconds: float) -> None:
        with self._lock:
            self._active -= 1
            self._mean_s = (1 - RETRY_EMA) * self._mean_s + RETRY_EMA * seconds

    def retry_after_s(self) -> int:
        return max(1, math.ceil(self._mean_s))


class ClonedVoice:
    """A served voice that is a cloning voice speaking as one reference clip's speaker (`serve --clone
    NAME=CLIP`): clients ask for NAME like any voice; every request passes the clip's reference, which was
    made once at start-up (the speaker vector or codes of the clip)."""

    def __init__(self, name: str, base, reference, clip: str) -> None:
        self.name, self.base, self.reference = name, base, reference
        self.sample_rate = base.sample_rate
        self.description = f"{base.name} speaking as the speaker of {clip}"

    def synthesize(self, text: str, **kwargs) -> tuple[np.ndarray, int]:
        return self.base.synthesize(text, reference=self.reference, **kwargs)

    def stream(self, text: str, **kwargs) -> Iterator[np.ndarray]:
        return self.base.stream(text, reference=self.reference, **kwargs)


def _description(synth: Synthesizer) -> str:
    """A voice's one-line description: its own attribute, else its voice.json `meta`, else ""."""
    text = getattr(synth, "description", None)
    if text is None:
        meta = getattr(synth, "meta", None)
        text = meta.get("description", "") if isinstance(meta, dict) else ""
    return str(text or "")


Disconnected = Callable[[], Awaitable[Any]]  # resolves when the client has disconnected


class SpeechService:
    """Loaded voices (name -> synthesizer; the first is the default), their limits and worker pool."""

    def __init__(self, synthesizers: Mapping[str, Synthesizer], config: ServeConfig | None = None) -> None:
        if not synthesizers:
            raise ConfigError("the server needs at least one voice")
        self.config = config or ServeConfig()
        self.voices = dict(synthesizers)
        self.default_voice = next(iter(self.voices))
        self.aliases = self._aliases(self.config.voice_aliases)
        self.formats = encodable_formats()
        self.default_format = "mp3" if "mp3" in self.formats else "wav"
        self.slots = GenerationSlots(self.config.max_concurrent)
        self.executor = ThreadPoolExecutor(max_workers=self.config.max_concurrent, thread_name_prefix="codectts-gen")
        self.started = int(time.time())

    def _aliases(self, given: Mapping[str, str] | None) -> dict[str, str]:
        aliases = {name: self.default_voice for name in OPENAI_VOICES}
        aliases.update(given or {})
        for name, target in aliases.items():
            if target not in self.voices:
                raise ConfigError(f"voice alias {name}={target}: no voice {target!r} is loaded "
                                  f"(loaded: {', '.join(self.voices)})")
        return {name: target for name, target in aliases.items() if name not in self.voices}  # a voice wins

    def close(self) -> None:
        self.executor.shutdown(wait=False, cancel_futures=True)

    # ---- listings -----------------------------------------------------------------------------
    def models(self) -> dict:
        return {"object": "list", "data": [{"id": m, "object": "model", "created": self.started, "owned_by": "codectts"}
                                           for m in (MODEL_ID, *MODEL_ALIASES)]}

    def voice_list(self) -> dict:
        return {"default": self.default_voice, "aliases": dict(self.aliases),
                "voices": [{"name": name, "sample_rate": int(s.sample_rate), "description": _description(s)}
                           for name, s in self.voices.items()]}

    def health(self) -> dict:
        return {"status": "ok", "voices": list(self.voices), "formats": list(self.formats),
                "generations_active": self.slots.active, "max_concurrent": self.slots.limit,
                "max_input_chars": self.config.max_input_chars}

    # ---- one request --------------------------------------------------------------------------
    def prepare(self, req: SpeechRequest) -> Job:
        """Check a request against what is loaded and the limits; raises RequestError / InputError."""
        if req.model != MODEL_ID and req.model not in MODEL_ALIASES:
            raise RequestError(f"model {show(req.model)} not found; available: {', '.join((MODEL_ID, *MODEL_ALIASES))}",
                               code="model_not_found", param="model")
        asked = self.default_voice if req.voice is None else req.voice
        voice = self.aliases.get(asked, asked)
        if voice not in self.voices:
            also = f" (or an alias: {', '.join(self.aliases)})" if self.aliases else ""
            raise RequestError(f"voice {show(asked)} not found; available: {', '.join(self.voices)}{also}",
                               code="voice_not_found", param="voice")
        fmt = (req.response_format or self.default_format).lower()
        if fmt not in self.formats:
            why = "is not encodable on this server" if fmt in FORMATS or fmt in KNOWN_UNENCODABLE else "is unknown"
            raise RequestError(f"response_format {show(fmt)} {why}; supported: {', '.join(self.formats)}",
                               code="unsupported_format", param="response_format")
        streaming = req.stream if req.stream is not None else req.stream_format is not None
        if req.stream is False and req.stream_format == "sse":
            raise RequestError("stream_format 'sse' needs streaming; drop 'stream': false", param="stream")
        if streaming and not FORMATS[fmt].streamable:
            can = ", ".join(f for f in self.formats if FORMATS[f].streamable)
            raise RequestError(f"response_format {fmt!r} cannot be streamed; stream one of: {can}",
                               code="unsupported_format", param="response_format")
        text = req.input
        if not text.strip():
            raise InputError("input is empty", code="empty_input")
        if len(text) > self.config.max_input_chars:
            raise InputError(f"input is {len(text)} characters; the limit is {self.config.max_input_chars}",
                             code="input_too_long")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise RequestError("input holds unpaired UTF-16 surrogates (not valid Unicode text)",
                               param="input") from None
        stream_format = (req.stream_format or "audio") if streaming else None
        kwargs = {"speed": req.speed, "temperature": req.temperature, "top_k": req.top_k, "top_p": req.top_p,
                  "seed": req.seed}
        return Job(self.voices[voice], text, kwargs, fmt, stream_format,
                   log={"voice": voice, "format": fmt, "stream": stream_format, "chars": len(text), "speed": req.speed})

    async def synthesize(self, job: Job, client_gone: Disconnected | None = None) -> Speech:
        """One whole file. The worker is told to stop (between sentences) at the timeout or when the
        client goes away, so an abandoned generation frees its slot soon instead of running on."""
        self.slots.acquire()
        stop = threading.Event()
        work = asyncio.wrap_future(self.executor.submit(self._whole, job, stop))
        try:
            await _wait(work, client_gone, self.config.request_timeout_s,
                        f"generation took longer than {self.config.request_timeout_s:g} s")
        finally:
            stop.set()  # when abandoned, the worker gives up at its next sentence and frees the slot
        data, sr, seconds = work.result()
        job.log["audio_s"] = round(seconds, 3)
        return Speech(data, sr, FORMATS[job.fmt].media_type, job.fmt)

    def _whole(self, job: Job, stop: threading.Event) -> tuple[bytes, int, float]:
        """Worker thread: synthesize and encode one utterance; frees the slot when done."""
        t0 = time.perf_counter()
        try:
            if stop.is_set():
                raise GenerationError("generation stopped before it started")
            wav, sr = job.synth.synthesize(job.text, **job.kwargs, should_stop=stop.is_set)
            wav = np.asarray(wav, dtype=np.float32).reshape(-1)
            return encode_full(wav, sr, job.fmt), output_rate(job.fmt, sr), wav.size / sr
        finally:
            self.slots.release(time.perf_counter() - t0)

    async def stream(self, job: Job, client_gone: Disconnected | None = None) -> AsyncIterator[bytes]:
        """Start a streamed generation and wait for its first audio, so errors before it still get a
        proper status; returns an iterator of encoded pieces, which raises if the generation fails or
        times out later. Closing the iterator (client gone) stops the worker at its next chunk."""
        self.slots.acquire()
        return await _Stream(self, job).start(client_gone)


class _Stream:
    """One streamed generation: a worker thread produces encoded pieces into a bounded buffer; the
    event loop takes them out. A full buffer makes the worker wait (a slow client slows the model
    instead of growing memory); the worker gives up when told to stop or at the request deadline."""

    def __init__(self, service: SpeechService, job: Job) -> None:
        self.service, self.job = service, job
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        self.room = threading.Semaphore(service.config.stream_buffer)  # free places for audio pieces
        self.stop = threading.Event()
        self.timeout_s = service.config.request_timeout_s
        self.deadline = time.monotonic() + self.timeout_s

    async def start(self, client_gone: Disconnected | None) -> AsyncIterator[bytes]:
        self.service.executor.submit(self._produce)
        first = asyncio.ensure_future(self.queue.get())
        try:
            await _wait(first, client_gone, self.timeout_s, f"no audio within {self.timeout_s:g} s")
        except BaseException:
            self.stop.set()
            first.cancel()
            raise
        item = first.result()
        if item[0] == "error":
            raise item[1]
        return self._pieces(item)

    def _emit(self, item: tuple[str, Any]) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop is gone (server shutting down): nobody is listening
            self.stop.set()

    def _emit_audio(self, data: bytes) -> bool:
        """Worker side: wait for room in the buffer; False when the stream was abandoned meanwhile."""
        while not self.room.acquire(timeout=POLL_S):
            if self.stop.is_set() or time.monotonic() > self.deadline:
                return False
        self._emit(("data", data))
        return True

    def _produce(self) -> None:
        """Worker thread: owns the synthesizer's iterator and the encoder from start to end.

        The slot is freed before the last item goes out, so a client that sends its next request
        the moment this stream ends never meets its own finished generation in the count."""
        job, t0, samples, chunks, last = self.job, time.perf_counter(), 0, None, []
        try:
            encoder = StreamEncoder(job.fmt, job.synth.sample_rate)
            chunks = iter(job.synth.stream(job.text, **job.kwargs))
            for chunk in chunks:
                if self.stop.is_set():
                    return
                chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
                samples += chunk.size
                if (data := encoder.feed(chunk)) and not self._emit_audio(data):
                    return
            last = [("data", encoder.finish()), ("end", samples / job.synth.sample_rate)]
        except BaseException as e:  # noqa: BLE001 - every failure must reach the client side
            last = [("error", e)]
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                try:
                    close()
                except Exception:
                    log.warning("closing the synthesizer stream failed", exc_info=True)
            self.service.slots.release(time.perf_counter() - t0)
            for item in last:
                self._emit(item)

    async def _next(self) -> tuple[str, Any]:
        try:
            item = await asyncio.wait_for(self.queue.get(), max(0.0, self.deadline - time.monotonic()))
        except TimeoutError:
            raise GenerationTimeout("request timed out") from None
        if item[0] == "data":
            self.room.release()
        return item

    async def _pieces(self, item: tuple[str, Any]) -> AsyncIterator[bytes]:
        if item[0] == "data":
            self.room.release()
        try:
            while True:
                kind, value = item
                if kind == "data" and value:
                    yield value
                elif kind == "end":
                    self.job.log["audio_s"] = round(value, 3)
                    return
                elif kind == "error":
                    raise value
                item = await self._next()
        finally:
            self.stop.set()  # client gone, timeout or done: the worker stops at its next chunk


async def _wait(work: asyncio.Future, client_gone: Disconnected | None, timeout_s: float, late: str) -> None:
    """Wait for `work` to finish; raise ClientDisconnected if the client goes away first, or
    GenerationTimeout (saying `late`) after `timeout_s`. `work` itself is never cancelled here."""
    gone = asyncio.ensure_future(client_gone()) if client_gone is not None else None
    try:
        done, _ = await asyncio.wait({work} | ({gone} if gone else set()), timeout=timeout_s,
                                     return_when=asyncio.FIRST_COMPLETED)
    finally:
        if gone is not None:
            gone.cancel()
    if work in done:
        return
    work.add_done_callback(lambda f: f.cancelled() or f.exception())  # its end is nobody's business now
    if gone in done:
        raise ClientDisconnected("the client closed the connection before the audio was ready")
    raise GenerationTimeout(late)

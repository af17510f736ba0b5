"""The HTTP server: OpenAI-compatible `/v1/audio/speech`, streaming audio or SSE, a small web page.

`create_app` receives loaded synthesizers (it never loads models itself), so the same app serves a
trained voice, several voices, or a test double. Model work runs in worker threads, at most
`max_concurrent` generations at once; beyond that a request is refused at once with 429 and
`Retry-After` instead of queueing without bound. Every error is OpenAI's `{"error": {...}}` JSON;
clients never see a stack trace.
"""
from __future__ import annotations

import asyncio
import base64
import json
import logging
import math
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from importlib import resources
from typing import Any, Literal, Protocol

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from codectts.errors import TextError
from codectts.serve.formats import (
    FORMATS,
    KNOWN_UNENCODABLE,
    StreamEncoder,
    encodable_formats,
    encode_full,
    output_rate,
)

log = logging.getLogger("codectts.serve")
access_log = logging.getLogger("codectts.serve.access")

MODEL_ID = "codectts"
# Model names OpenAI clients send by default; all mean "the voice you asked for, synthesized here".
MODEL_ALIASES = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
MIN_SPEED, MAX_SPEED = 0.25, 4.0  # OpenAI's range
MAX_TEMPERATURE = 10.0
DEFAULT_MAX_INPUT_CHARS = 4096  # OpenAI's limit
DEFAULT_MAX_CONCURRENT = 2  # one generation per core on the 2-core target machine
DEFAULT_REQUEST_TIMEOUT_S = 120.0
# A JSON string may spend up to 12 bytes per character (a surrogate pair as two \uXXXX escapes).
JSON_BYTES_PER_CHAR = 12
BODY_OVERHEAD_BYTES = 16 * 1024  # the other fields
SHOWN_VALUE_CHARS = 60  # user values echoed in error messages are cut to this length
RETRY_EMA = 0.3  # weight of the newest generation time in the Retry-After estimate
STATIC_DIR = resources.files("codectts.serve") / "static"


class Synthesizer(Protocol):
    """What the server needs from a voice (`codectts.infer.Synthesizer` fits). Must be thread-safe:
    up to `max_concurrent` calls may run at once on one object."""

    name: str
    sample_rate: int

    def synthesize(self, text: str, *, speed: float = 1.0, temperature: float | None = None,
                   top_k: int | None = None, top_p: float | None = None,
                   seed: int | None = None) -> tuple[np.ndarray, int]: ...

    def stream(self, text: str, *, speed: float = 1.0, temperature: float | None = None,
               top_k: int | None = None, top_p: float | None = None,
               seed: int | None = None) -> Iterator[np.ndarray]: ...


@dataclass(frozen=True)
class ServeConfig:
    """Server limits. `max_body_bytes` is derived: room for `max_input_chars` escaped characters."""

    max_input_chars: int = DEFAULT_MAX_INPUT_CHARS
    max_concurrent: int = DEFAULT_MAX_CONCURRENT
    request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S

    def __post_init__(self) -> None:
        if self.max_input_chars < 1:
            raise ValueError(f"max_input_chars must be >= 1, got {self.max_input_chars}")
        if self.max_concurrent < 1:
            raise ValueError(f"max_concurrent must be >= 1, got {self.max_concurrent}")
        if not self.request_timeout_s > 0:
            raise ValueError(f"request_timeout_s must be > 0, got {self.request_timeout_s}")

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


class ApiError(Exception):
    """An error the client caused (or a limit it hit), sent as OpenAI's error JSON."""

    def __init__(self, status: int, message: str, *, code: str, param: str | None = None,
                 type: str = "invalid_request_error", headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.code, self.param, self.type = status, message, code, param, type
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return error_response(self.status, self.message, code=self.code, param=self.param, type=self.type,
                              headers=self.headers)


def error_response(status: int, message: str, *, code: str | None, param: str | None = None,
                   type: str = "invalid_request_error", headers: dict[str, str] | None = None) -> JSONResponse:
    body = {"error": {"message": message, "type": type, "param": param, "code": code}}
    return JSONResponse(body, status_code=status, headers=headers)


def _show(value: Any) -> str:
    """A user value, safe to echo: cut short, lone surrogates escaped (they cannot be UTF-8 encoded)."""
    text = str(value)
    if len(text) > SHOWN_VALUE_CHARS:
        text = text[:SHOWN_VALUE_CHARS] + "..."
    return repr(text.encode("utf-8", "backslashreplace").decode("utf-8"))


def _description(synth: Synthesizer) -> str:
    """A voice's one-line description: its own attribute, else its voice.json `meta`, else ""."""
    text = getattr(synth, "description", None)
    if text is None:
        meta = getattr(synth, "meta", None)
        text = meta.get("description", "") if isinstance(meta, dict) else ""
    return str(text or "")


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

    def try_acquire(self) -> bool:
        with self._lock:
            if self._active >= self.limit:
                return False
            self._active += 1
            return True

    def release(self, seconds: float) -> None:
        with self._lock:
            self._active -= 1
            self._mean_s = (1 - RETRY_EMA) * self._mean_s + RETRY_EMA * seconds

    def retry_after_s(self) -> int:
        return max(1, math.ceil(self._mean_s))


@dataclass
class _Job:
    """One accepted generation: what to make, and the log fields it fills in."""

    synth: Synthesizer
    text: str
    kwargs: dict[str, Any]
    fmt: str
    log: dict[str, Any] = field(default_factory=dict)


class AccessLogMiddleware:
    """One JSON line per request on `codectts.serve.access`, written when the response ends
    (streams included); adds an `x-request-id` header that also names the request in server logs."""

    def __init__(self, app) -> None:
        self.app = app

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        t0 = time.perf_counter()
        request_id = uuid.uuid4().hex[:12]
        fields = scope.setdefault("codectts.log", {})
        fields["request_id"] = request_id
        state = {"status": 0, "bytes": 0, "ttfb_ms": None, "done": False}

        async def send_logged(message) -> None:
            if message["type"] == "http.response.start":
                state["status"] = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [*message["headers"], (b"x-request-id", request_id.encode())]
            elif message["type"] == "http.response.body":
                body = message.get("body", b"")
                if body and state["ttfb_ms"] is None:
                    state["ttfb_ms"] = round((time.perf_counter() - t0) * 1000, 1)
                state["bytes"] += len(body)
                state["done"] = not message.get("more_body", False)
            await send(message)

        try:
            await self.app(scope, receive, send_logged)
        except Exception:
            state["status"] = state["status"] or 500
            raise
        finally:
            client = scope.get("client")
            record = {
                "event": "access", "request_id": request_id, "method": scope.get("method"),
                "path": scope.get("path"), "status": state["status"],
                "ms": round((time.perf_counter() - t0) * 1000, 1), "first_byte_ms": state["ttfb_ms"],
                "bytes": state["bytes"], "complete": state["done"],
                "client": f"{client[0]}:{client[1]}" if client else None,
            }
            record.update({k: v for k, v in fields.items() if k != "request_id"})
            access_log.info(json.dumps(record, ensure_ascii=True))


class BodyLimitMiddleware:
    """Refuse request bodies over `max_bytes` (413) before anything parses them."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        too_big = error_response(413, f"request body is larger than {self.max_bytes} bytes",
                                 code="request_too_large")
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await too_big(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await too_big(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay_receive():
            return replay.pop() if replay else await receive()

        await self.app(scope, replay_receive, send)


def create_app(synthesizers: dict[str, Synthesizer], *, max_input_chars: int = DEFAULT_MAX_INPUT_CHARS,
               max_concurrent: int = DEFAULT_MAX_CONCURRENT,
               request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S) -> FastAPI:
    """Build the app around already-loaded voices (name -> synthesizer; the first is the default)."""
    if not synthesizers:
        raise ValueError("create_app needs at least one synthesizer")
    cfg = ServeConfig(max_input_chars=max_input_chars, max_concurrent=max_concurrent,
                      request_timeout_s=request_timeout_s)
    voices = dict(synthesizers)
    default_voice = next(iter(voices))
    formats = encodable_formats()
    default_format = "mp3" if "mp3" in formats else "wav"
    slots = GenerationSlots(cfg.max_concurrent)
    executor = ThreadPoolExecutor(max_workers=cfg.max_concurrent, thread_name_prefix="codectts-gen")
    started = int(time.time())

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        executor.shutdown(wait=False, cancel_futures=True)

    app = FastAPI(title="codectts", version="1", lifespan=lifespan,
                  summary="OpenAI-compatible text-to-speech with codectts voices")
    app.state.config, app.state.slots, app.state.voices = cfg, slots, voices
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.max_body_bytes)
    app.add_middleware(AccessLogMiddleware)  # added last = outermost: it sees the 413s too

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error_response(exc.status_code, str(exc.detail), code=code, headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        request_id = request.scope.get("codectts.log", {}).get("request_id", "?")
        log.error("request %s failed", request_id, exc_info=exc)
        return error_response(500, f"internal server error (request id {request_id})", code="internal_error",
                              type="server_error")

    def parse(body: bytes) -> SpeechRequest:
        try:
            data = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as e:
            raise ApiError(400, f"request body is not valid JSON ({type(e).__name__})", code="invalid_json") from None
        if not isinstance(data, dict):
            raise ApiError(400, "request body must be a JSON object", code="invalid_json")
        try:
            return SpeechRequest.model_validate(data)
        except ValidationError as e:
            err = e.errors(include_url=False, include_input=False)[0]
            param = ".".join(str(p) for p in err["loc"]) or None
            raise ApiError(400, f"{param}: {err['msg']}", code="invalid_value", param=param) from None
        except RecursionError:
            raise ApiError(400, "request body is nested too deeply", code="invalid_json") from None

    def resolve(req: SpeechRequest) -> tuple[_Job, bool, str | None]:
        """Check a request against what is loaded; returns (job, streaming?, stream_format)."""
        if req.model != MODEL_ID and req.model not in MODEL_ALIASES:
            raise ApiError(
                404,
                f"model {_show(req.model)} not found; available: {', '.join((MODEL_ID, *MODEL_ALIASES))}",
                code="model_not_found",
                param="model",
            )
        voice = default_voice if req.voice is None else req.voice
        if voice not in voices:
            raise ApiError(
                404,
                f"voice {_show(voice)} not found; available: {', '.join(voices)}",
                code="voice_not_found",
                param="voice",
            )
        fmt = (req.response_format or default_format).lower()
        if fmt not in formats:
            why = "is not encodable on this server" if fmt in FORMATS or fmt in KNOWN_UNENCODABLE else "is unknown"
            raise ApiError(
                400,
                f"response_format {_show(fmt)} {why}; supported: {', '.join(formats)}",
                code="unsupported_format",
                param="response_format",
            )
        streaming = req.stream if req.stream is not None else req.stream_format is not None
        stream_format = (req.stream_format or "audio") if streaming else None
        if req.stream is False and req.stream_format == "sse":
            raise ApiError(
                400, "stream_format 'sse' needs streaming; drop 'stream': false", code="invalid_value", param="stream"
            )
        if streaming and not FORMATS[fmt].streamable:
            can = ", ".join(f for f in formats if FORMATS[f].streamable)
            raise ApiError(
                400,
                f"response_format {fmt!r} cannot be streamed; stream one of: {can}",
                code="unsupported_format",
                param="response_format",
            )
        text = req.input
        if not text.strip():
            raise ApiError(400, "input is empty", code="empty_input", param="input")
        if len(text) > cfg.max_input_chars:
            raise ApiError(
                413,
                f"input is {len(text)} characters; the limit is {cfg.max_input_chars}",
                code="input_too_long",
                param="input",
            )
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ApiError(
                400,
                "input holds unpaired UTF-16 surrogates (not valid Unicode text)",
                code="invalid_value",
                param="input",
            ) from None
        kwargs = {
            "speed": req.speed,
            "temperature": req.temperature,
            "top_k": req.top_k,
            "top_p": req.top_p,
            "seed": req.seed,
        }
        job = _Job(
            voices[voice],
            text,
            kwargs,
            fmt,
            log={"voice": voice, "format": fmt, "stream": stream_format, "chars": len(text), "speed": req.speed},
        )
        return job, streaming, stream_format

    def acquire() -> None:
        if not slots.try_acquire():
            wait = slots.retry_after_s()
            raise ApiError(
                429,
                f"{slots.limit} generations are already running; retry in {wait} s",
                code="too_many_concurrent_requests",
                type="rate_limit_error",
                headers={"Retry-After": str(wait)},
            )

    def synthesis_failed(exc: BaseException, request_id: str) -> ApiError:
        if isinstance(exc, TextError):
            return ApiError(400, f"input cannot be spoken: {exc}", code="invalid_input", param="input")
        log.error("request %s: synthesis failed", request_id, exc_info=exc)
        return ApiError(
            500, f"synthesis failed (request id {request_id})", code="synthesis_failed", type="server_error"
        )

    def run_whole(job: _Job) -> tuple[bytes, int, float]:
        """Worker thread: synthesize and encode one utterance; frees the slot when done."""
        t0 = time.perf_counter()
        try:
            wav, sr = job.synth.synthesize(job.text, **job.kwargs)
            wav = np.asarray(wav, dtype=np.float32).reshape(-1)
            return encode_full(wav, sr, job.fmt), output_rate(job.fmt, sr), wav.size / sr
        finally:
            slots.release(time.perf_counter() - t0)

    async def speak_whole(job: _Job, request_id: str) -> Response:
        future = asyncio.wrap_future(executor.submit(run_whole, job))
        try:
            data, sr, seconds = await asyncio.wait_for(future, cfg.request_timeout_s)
        except TimeoutError:
            raise ApiError(
                504, f"generation took longer than {cfg.request_timeout_s:g} s", code="timeout", type="server_error"
            ) from None
        except Exception as e:  # noqa: BLE001 - any model failure becomes a JSON error, never a traceback
            raise synthesis_failed(e, request_id) from None
        job.log["audio_s"] = round(seconds, 3)
        headers = {"X-Sample-Rate": str(sr), "Content-Disposition": f'inline; filename="speech.{job.fmt}"'}
        return Response(data, media_type=FORMATS[job.fmt].media_type, headers=headers)

    async def speak_stream(job: _Job, stream_format: str, request_id: str) -> Response:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[str, Any]] = asyncio.Queue()
        stop = threading.Event()
        deadline = loop.time() + cfg.request_timeout_s

        def emit(item: tuple[str, Any]) -> None:
            try:
                loop.call_soon_threadsafe(queue.put_nowait, item)
            except RuntimeError:  # the loop is gone (server shutting down): nobody is listening
                stop.set()

        def produce() -> None:
            """Worker thread: owns the synthesizer's iterator and the encoder from start to end.

            The slot is freed before the last item goes out, so a client that sends its next request
            the moment this stream ends never meets its own finished generation in the count."""
            t0, samples, chunks, last = time.perf_counter(), 0, None, []
            try:
                encoder = StreamEncoder(job.fmt, job.synth.sample_rate)
                chunks = iter(job.synth.stream(job.text, **job.kwargs))
                for chunk in chunks:
                    if stop.is_set():
                        return
                    chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
                    samples += chunk.size
                    if data := encoder.feed(chunk):
                        emit(("data", data))
                last = [("data", encoder.finish()), ("end", samples / job.synth.sample_rate)]
            except BaseException as e:  # noqa: BLE001 - every failure must reach the client side
                last = [("error", e)]
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    try:
                        close()
                    except Exception:
                        log.warning("request %s: closing the synthesizer stream failed", request_id, exc_info=True)
                slots.release(time.perf_counter() - t0)
                for item in last:
                    emit(item)

        async def next_item() -> tuple[str, Any]:
            return await asyncio.wait_for(queue.get(), max(0.0, deadline - loop.time()))

        executor.submit(produce)
        try:
            first = await next_item()  # errors before the first audio still get a proper status
        except TimeoutError:
            stop.set()
            raise ApiError(
                504, f"no audio within {cfg.request_timeout_s:g} s", code="timeout", type="server_error"
            ) from None
        if first[0] == "error":
            raise synthesis_failed(first[1], request_id)

        def frame(data: bytes) -> bytes:
            if stream_format == "audio":
                return data
            event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")}
            return f"data: {json.dumps(event)}\n\n".encode()

        def sse_event(event: dict) -> bytes:
            return f"data: {json.dumps(event)}\n\n".encode()

        async def body() -> AsyncIterator[bytes]:
            item = first
            try:
                while True:
                    kind, value = item
                    if kind == "data":
                        if value:
                            yield frame(value)
                    elif kind == "end":
                        job.log["audio_s"] = round(value, 3)
                        if stream_format == "sse":
                            yield sse_event({"type": "speech.audio.done", "audio_seconds": round(value, 3)})
                        return
                    else:  # an error after the status line went out: end the stream, say why in SSE
                        err = synthesis_failed(value, request_id)
                        job.log["error"] = err.code
                        if stream_format == "sse":
                            yield sse_event({"type": "error", "error": {"message": err.message, "code": err.code}})
                        return
                    item = await next_item()
            except TimeoutError:
                job.log["error"] = "timeout"
                log.warning("request %s: stream cut at the %g s request timeout", request_id, cfg.request_timeout_s)
                if stream_format == "sse":
                    yield sse_event({"type": "error", "error": {"message": "request timed out", "code": "timeout"}})
            finally:
                stop.set()  # client gone, timeout or done: the worker stops at its next chunk

        headers = {
            "X-Sample-Rate": str(output_rate(job.fmt, job.synth.sample_rate)),
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",
        }
        media = FORMATS[job.fmt].media_type if stream_format == "audio" else "text/event-stream"
        return StreamingResponse(body(), media_type=media, headers=headers)

    @app.post(
        "/v1/audio/speech",
        summary="Text to speech (OpenAI-compatible)",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {"application/json": {"schema": SpeechRequest.model_json_schema()}},
            }
        },
    )
    async def speech(request: Request) -> Response:
        fields = request.scope.setdefault("codectts.log", {})
        job, streaming, stream_format = resolve(parse(await request.body()))
        fields.update(job.log)
        job.log = fields
        acquire()
        if streaming:
            return await speak_stream(job, stream_format, fields.get("request_id", "?"))
        return await speak_whole(job, fields.get("request_id", "?"))

    @app.get("/v1/models", summary="Models (OpenAI-compatible list)")
    async def models() -> dict:
        return {
            "object": "list",
            "data": [
                {"id": m, "object": "model", "created": started, "owned_by": "codectts"}
                for m in (MODEL_ID, *MODEL_ALIASES)
            ],
        }

    @app.get("/v1/voices", summary="Loaded voices")
    @app.get("/v1/audio/voices", include_in_schema=False)  # where Kokoro-FastAPI clients look
    async def list_loaded_voices() -> dict:
        return {
            "default": default_voice,
            "voices": [
                {"name": name, "sample_rate": int(s.sample_rate), "description": _description(s)}
                for name, s in voices.items()
            ],
        }

    @app.get("/health", summary="Liveness and load")
    async def health() -> dict:
        return {
            "status": "ok",
            "voices": list(voices),
            "formats": list(formats),
            "generations_active": slots.active,
            "max_concurrent": slots.limit,
            "max_input_chars": cfg.max_input_chars,
        }

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(STATIC_DIR / "index.html"), headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    return app

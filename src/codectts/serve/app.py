"""The HTTP server: OpenAI-compatible `/v1/audio/speech`, streaming audio or SSE, a small web page.

`create_app` receives loaded synthesizers (it never loads models itself), so the same app serves a
trained voice, several voices, or a test double. The routes are thin: they parse the request into a
`SpeechRequest` and call `SpeechService` (serve/service.py), which owns the voices, the worker pool
and the limits. Every error is OpenAI's `{"error": {...}}` JSON, chosen in one place
(`serve.errors.http_error`); clients never see a stack trace. Only JSON bodies are accepted and only
for Host names of this server, so a web page in the user's browser cannot start generations.
"""
from __future__ import annotations

import base64
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import replace
from email.message import Message
from importlib import resources
from typing import Annotated, Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import FileResponse, JSONResponse, Response, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from codectts.errors import CodecTTSError
from codectts.serve.errors import HttpError, RequestError, http_error, show
from codectts.serve.formats import FORMATS, output_rate
from codectts.serve.middleware import (
    AccessLogMiddleware,
    BodyLimitMiddleware,
    HostCheckMiddleware,
    SendTimeoutMiddleware,
)
from codectts.serve.service import (
    Job,
    ServeConfig,
    SpeechRequest,
    SpeechService,
    Synthesizer,
)

log = logging.getLogger("codectts.serve")
STATIC_DIR = resources.files("codectts.serve") / "static"
JSON_MEDIA_TYPE = "application/json"

__all__ = ["ServeConfig", "SpeechRequest", "SpeechService", "Synthesizer", "create_app"]


async def speech_request(request: Request) -> SpeechRequest:
    """The body as a SpeechRequest. Only `Content-Type: application/json`: the types a web page may
    send cross-site without asking first (text/plain, forms) are refused with 415."""
    given = request.headers.get("content-type", "")
    header = Message()
    header["content-type"] = given
    if not given or header.get_content_type() != JSON_MEDIA_TYPE:
        raise RequestError(f"Content-Type must be {JSON_MEDIA_TYPE} (got {show(given) if given else 'none'})",
                           code="unsupported_media_type", param="Content-Type")
    return parse_speech_request(await request.body())


def parse_speech_request(body: bytes) -> SpeechRequest:
    try:
        data = json.loads(body)
    except ValueError as e:  # bad JSON, bad UTF-8, integers over Python's digit limit
        raise RequestError(f"request body is not valid JSON ({type(e).__name__})", code="invalid_json") from None
    except RecursionError:
        raise RequestError("request body is nested too deeply", code="invalid_json") from None
    if not isinstance(data, dict):
        raise RequestError("request body must be a JSON object", code="invalid_json")
    try:
        return SpeechRequest.model_validate(data)
    except ValidationError as e:
        err = e.errors(include_url=False, include_input=False)[0]
        param = ".".join(str(p) for p in err["loc"]) or None
        raise RequestError(f"{param}: {err['msg']}", param=param) from None
    except RecursionError:
        raise RequestError("request body is nested too deeply", code="invalid_json") from None


async def wait_for_disconnect(request: Request) -> None:
    """Returns once the client has gone (the body was read already, so nothing else comes)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def audio_headers(job: Job) -> dict[str, str]:
    return {"X-Sample-Rate": str(output_rate(job.fmt, job.synth.sample_rate))}


async def stream_body(pieces: AsyncIterator[bytes], job: Job, request_id: str) -> AsyncIterator[bytes]:
    """The streamed response: raw audio, or SSE events. A failure after the status line went out can
    only end the stream: SSE says why in a last event, raw audio just stops."""
    sse = job.stream_format == "sse"
    try:
        async for data in pieces:
            if sse:
                event = {"type": "speech.audio.delta", "audio": base64.b64encode(data).decode("ascii")}
                yield f"data: {json.dumps(event)}\n\n".encode()
            else:
                yield data
        if sse:
            done = {"type": "speech.audio.done", "audio_seconds": job.log.get("audio_s")}
            yield f"data: {json.dumps(done)}\n\n".encode()
    except Exception as e:  # noqa: BLE001 - every failure ends the stream cleanly
        err: HttpError = http_error(e, request_id)
        job.log["error"] = err.code
        log.warning("request %s: stream ended early: %s", request_id, err.code)
        if sse:
            yield err.sse_event()
    finally:
        await pieces.aclose()  # type: ignore[attr-defined]


def create_app(synthesizers: Mapping[str, Synthesizer], config: ServeConfig | None = None, **limits: Any) -> FastAPI:
    """Build the app around already-loaded voices (name -> synthesizer; the first is the default).
    `limits` are ServeConfig fields that replace those of `config` (e.g. `max_concurrent=1`)."""
    cfg = replace(config or ServeConfig(), **limits)
    service = SpeechService(synthesizers, cfg)

    @asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        service.close()

    app = FastAPI(title="codectts", version="1", lifespan=lifespan,
                  summary="OpenAI-compatible text-to-speech with codectts voices")
    app.state.service = service
    # Added last = outermost: the access log sees every refusal, the Host check runs before any body is read.
    app.add_middleware(BodyLimitMiddleware, max_bytes=cfg.max_body_bytes, read_timeout_s=cfg.read_timeout_s)
    app.add_middleware(SendTimeoutMiddleware, timeout_s=cfg.send_timeout_s)
    app.add_middleware(HostCheckMiddleware, allowed_hosts=cfg.allowed_hosts)
    app.add_middleware(AccessLogMiddleware)

    @app.exception_handler(CodecTTSError)
    async def _codectts_error(request: Request, exc: CodecTTSError) -> JSONResponse:
        return http_error(exc, request.scope.get("codectts.log", {}).get("request_id", "?")).response()

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return HttpError(exc.status_code, str(exc.detail), code, headers=dict(exc.headers or {})).response()

    @app.exception_handler(Exception)
    async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
        request_id = request.scope.get("codectts.log", {}).get("request_id", "?")
        log.error("request %s failed", request_id, exc_info=exc)
        return HttpError(500, f"internal server error (request id {request_id})", "internal_error",
                         type="server_error").response()

    @app.post("/v1/audio/speech", summary="Text to speech (OpenAI-compatible)", openapi_extra={"requestBody": {
        "required": True, "content": {JSON_MEDIA_TYPE: {"schema": SpeechRequest.model_json_schema()}}}})
    async def speech(req: Annotated[SpeechRequest, Depends(speech_request)], request: Request) -> Response:
        fields = request.scope.setdefault("codectts.log", {})
        request_id = fields.get("request_id", "?")
        try:
            job = service.prepare(req)
            fields.update(job.log)
            job.log = fields
            if job.stream_format is None:
                speech = await service.synthesize(job, lambda: wait_for_disconnect(request))
                headers = {**audio_headers(job), "Content-Disposition": f'inline; filename="speech.{job.fmt}"'}
                return Response(speech.data, media_type=speech.media_type, headers=headers)
            pieces = await service.stream(job, lambda: wait_for_disconnect(request))
        except Exception as e:  # noqa: BLE001 - the model's failures too become JSON errors, never tracebacks
            err = http_error(e, request_id)
            fields["error"] = err.code
            return err.response()
        media = FORMATS[job.fmt].media_type if job.stream_format == "audio" else "text/event-stream"
        headers = {**audio_headers(job), "Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return StreamingResponse(stream_body(pieces, job, request_id), media_type=media, headers=headers)

    @app.get("/v1/models", summary="Models (OpenAI-compatible list)")
    async def models() -> dict:
        return service.models()

    @app.get("/v1/voices", summary="Loaded voices and the names that alias them")
    @app.get("/v1/audio/voices", include_in_schema=False)  # where Kokoro-FastAPI clients look
    async def voices() -> dict:
        return service.voice_list()

    @app.get("/health", summary="Liveness and load")
    async def health() -> dict:
        return service.health()

    @app.get("/", include_in_schema=False)
    async def index() -> FileResponse:
        return FileResponse(str(STATIC_DIR / "index.html"), headers={"Cache-Control": "no-cache"})

    app.mount("/static", StaticFiles(directory=str(STATIC_DIR)), name="static")
    return app

"""The server's refusals as codectts errors, and the one table that turns any error into an HTTP answer.

Server code raises the meaningful codectts type: ConfigError (via `RequestError`) for a request the
server will not take, TextError (via `InputError`) for input text it refuses, GenerationError for a
generation that could not finish. The synthesizer's own errors arrive unchanged. `http_error` is the
only place that picks the HTTP status and OpenAI's error `code`/`type` for all of them.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import JSONResponse

from codectts.errors import CodecTTSError, ConfigError, GenerationError, TextError

log = logging.getLogger("codectts.serve")
SHOWN_VALUE_CHARS = 60  # user values echoed in error messages are cut to this length


class RequestError(ConfigError):
    """A request the server will not take: a field of the wrong type or range, a voice, model or format
    it does not have, a body that is not JSON or too large, a Host it does not answer to."""

    def __init__(self, message: str, *, code: str = "invalid_value", param: str | None = None) -> None:
        super().__init__(message)
        self.code, self.param = code, param


class InputError(TextError):
    """Input text refused before synthesis: empty, too long, not valid Unicode."""

    def __init__(self, message: str, *, code: str = "invalid_input") -> None:
        super().__init__(message)
        self.code, self.param = code, "input"


class ServerBusy(GenerationError):
    """A generation cannot start: every slot is taken; the client may retry after `retry_after_s`."""

    def __init__(self, message: str, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class GenerationTimeout(GenerationError):
    """No complete answer within the request timeout (the generation is told to stop)."""


class ClientDisconnected(GenerationError):
    """A generation abandoned: its client went away before the answer was ready (logged as 499)."""


# Refusals whose status is not the 400 of their type.
STATUS_BY_CODE = {"model_not_found": 404, "voice_not_found": 404, "request_timeout": 408, "input_too_long": 413,
                  "request_too_large": 413, "unsupported_media_type": 415, "host_not_allowed": 421}


@dataclass(frozen=True)
class HttpError:
    """OpenAI's error shape, `{"error": {message, type, param, code}}`, with its status and headers."""

    status: int
    message: str
    code: str
    param: str | None = None
    type: str = "invalid_request_error"
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers or None)

    def sse_event(self) -> bytes:
        """The error as the last event of an SSE stream (its status line went out long ago)."""
        event = {"type": "error", "error": {"message": self.message, "code": self.code}}
        return f"data: {json.dumps(event)}\n\n".encode()


def http_error(exc: BaseException, request_id: str = "?") -> HttpError:
    """Any error -> the HTTP answer for it. Messages of codectts errors are written for users and are
    shown; anything else is a bug, logged with its traceback and answered without internals."""
    if isinstance(exc, RequestError | InputError):
        return HttpError(STATUS_BY_CODE.get(exc.code, 400), str(exc), exc.code, exc.param)
    if isinstance(exc, ServerBusy):
        return HttpError(429, str(exc), "too_many_concurrent_requests", type="rate_limit_error",
                         headers={"Retry-After": str(exc.retry_after_s)})
    if isinstance(exc, ClientDisconnected):
        return HttpError(499, str(exc), "client_closed_request")
    if isinstance(exc, GenerationTimeout):
        return HttpError(504, str(exc), "timeout", type="server_error")
    if isinstance(exc, TextError):  # the synthesizer cannot speak this text
        return HttpError(400, f"input cannot be spoken: {exc}", "invalid_input", "input")
    if isinstance(exc, ConfigError):  # the synthesizer refuses a parameter (voices were checked at start-up)
        return HttpError(400, f"invalid request: {exc}", "invalid_value")
    if isinstance(exc, CodecTTSError):  # e.g. GenerationError, AudioError: the model failed, and says how
        log.error("request %s: synthesis failed: %s", request_id, exc)
        return HttpError(500, f"synthesis failed: {exc} (request id {request_id})", "synthesis_failed",
                         type="server_error")
    log.error("request %s: synthesis failed", request_id, exc_info=exc)
    return HttpError(500, f"synthesis failed (request id {request_id})", "synthesis_failed", type="server_error")


def show(value: Any) -> str:
    """A user value, safe to echo: cut short, lone surrogates escaped (they cannot be UTF-8 encoded)."""
    text = str(value)
    if len(text) > SHOWN_VALUE_CHARS:
        text = text[:SHOWN_VALUE_CHARS] + "..."
    return repr(text.encode("utf-8", "backslashreplace").decode("utf-8"))

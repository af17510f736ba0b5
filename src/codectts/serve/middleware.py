"""ASGI middleware around the app: the access log, the Host check, body size and time limits, and a
send timeout for clients that stop reading. Each refusal is OpenAI's error JSON (`serve.errors`)."""
from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
import time
import uuid

from codectts.serve.errors import RequestError, http_error

log = logging.getLogger("codectts.serve")
access_log = logging.getLogger("codectts.serve.access")

# Host names answered by default besides IP addresses (an IP in the Host header cannot be a DNS
# rebinding: the page that sent it was loaded from that address, i.e. from this server).
DEFAULT_ALLOWED_HOSTS = ("localhost",)
ANY_HOST = "*"


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


def host_name(header: str) -> str:
    """The name in a Host header, lower case, without port or brackets: '[::1]:8000' -> '::1'."""
    host = header.strip().lower()
    if host.startswith("["):
        end = host.find("]")
        return host[1:end] if end > 0 else host
    if host.count(":") == 1:  # name:port (a bare IPv6 address has several colons)
        host = host.split(":", 1)[0]
    return host.rstrip(".")


def host_allowed(name: str, allowed: frozenset[str]) -> bool:
    if ANY_HOST in allowed or name in allowed:
        return True
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheckMiddleware:
    """Answer only requests whose Host names this server (DNS rebinding defence): a web page that
    makes its own domain resolve to 127.0.0.1 still sends its own name as Host, and gets 421."""

    def __init__(self, app, allowed_hosts: tuple[str, ...] = ()) -> None:
        self.app = app
        self.allowed = frozenset(host_name(h) if h != ANY_HOST else h for h in (*DEFAULT_ALLOWED_HOSTS, *allowed_hosts))

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] in ("http", "websocket"):
            raw = dict(scope.get("headers", [])).get(b"host")
            if raw is not None:  # no Host at all: HTTP/1.0 tools, never a browser
                name = host_name(raw.decode("latin-1"))
                if not host_allowed(name, self.allowed):
                    err = RequestError(
                        f"this server does not answer to the host {name[:60]!r}; use localhost or its IP address, "
                        "or start it with --allow-host NAME", code="host_not_allowed", param="Host")
                    await http_error(err).response()(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class BodyLimitMiddleware:
    """Read a request body in full before the app sees it, refusing one over `max_bytes` (413) and one
    whose next piece takes longer than `read_timeout_s` to arrive (408), so a client trickling a body
    cannot hold a connection open indefinitely."""

    def __init__(self, app, max_bytes: int, read_timeout_s: float) -> None:
        self.app, self.max_bytes, self.read_timeout_s = app, max_bytes, read_timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http" or scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        too_big = RequestError(f"request body is larger than {self.max_bytes} bytes", code="request_too_large")
        length = dict(scope.get("headers", [])).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await http_error(too_big).response()(scope, receive, send)
            return
        chunks, size = [], 0
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.read_timeout_s)
            except TimeoutError:
                slow = RequestError(f"the request body did not arrive within {self.read_timeout_s:g} s",
                                    code="request_timeout")
                await http_error(slow).response()(scope, receive, send)
                return
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                await http_error(too_big).response()(scope, receive, send)
                return
            if not message.get("more_body", False):
                break
        replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay_receive():
            return replay.pop() if replay else await receive()

        await self.app(scope, replay_receive, send)


class _ClientStalled(Exception):
    """A send waited too long for the client to take data."""


class SendTimeoutMiddleware:
    """Give up on a client that stops reading: a send that waits more than `timeout_s` for room in the
    connection ends the response (the server then closes the connection), so a stalled reader holds
    neither a connection nor, through the stream's bounded buffer, a generation slot."""

    def __init__(self, app, timeout_s: float) -> None:
        self.app, self.timeout_s = app, timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def timed_send(message) -> None:
            try:
                async with asyncio.timeout(self.timeout_s):  # no extra task per send, unlike wait_for
                    await send(message)
            except TimeoutError:
                raise _ClientStalled from None

        try:
            await self.app(scope, receive, timed_send)
        except _ClientStalled:
            fields = scope.get("codectts.log", {})
            fields["error"] = "client_stalled"
            log.warning("request %s: the client read nothing for %g s; response dropped",
                        fields.get("request_id", "?"), self.timeout_s)

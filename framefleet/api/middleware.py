"""Request context as a plain ASGI middleware: request id, body size limit, access log, HTTP metrics and
the last-resort 500.

Plain ASGI rather than BaseHTTPMiddleware: no extra task or stream per request, and streaming responses
(SSE) pass straight through.
"""

from __future__ import annotations

import contextlib
import re
import time
import uuid

import structlog
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from framefleet.api import metrics
from framefleet.api.errors import PROBLEM_MEDIA_TYPE, internal_error_body, problem_body
from framefleet.logging import get_logger
from framefleet.observability import tracing

REQUEST_ID_HEADER = b"x-request-id"
# Accept a caller's id only if it is short and plain, so it is safe to echo and to log.
_VALID_ID = re.compile(rb"^[A-Za-z0-9._:-]{1,128}$")

log = get_logger("framefleet.api.access")

REQUEST_ID_STATE = "request_id"


def request_id_of(scope: Scope) -> str | None:
    """The request id RequestContextMiddleware gave this request."""
    value = scope.get("state", {}).get(REQUEST_ID_STATE)
    return value if isinstance(value, str) else None


def _read_headers(headers: list[tuple[bytes, bytes]]) -> tuple[str | None, int | None]:
    """The caller's request id (if acceptable) and the declared Content-Length."""
    request_id: str | None = None
    length: int | None = None
    for name, value in headers:
        if name == REQUEST_ID_HEADER:
            request_id = value.decode("latin-1") if _VALID_ID.match(value) else None
        elif name == b"content-length":
            length = int(value) if value.isdigit() else None
    return request_id, length


def _server_span(scope: Scope) -> contextlib.AbstractContextManager[tracing.Span | None]:
    """The request's server span, continuing the caller's W3C trace context when it sends one."""
    sent = next((value for name, value in scope["headers"] if name == b"traceparent"), b"")
    carrier = {tracing.TRACEPARENT: sent.decode("latin-1")}
    return tracing.span(
        scope["method"],  # renamed `METHOD /route/template` once routing has matched
        kind=tracing.SpanKind.SERVER,
        parent=tracing.extract(carrier),
        attributes={"http.request.method": scope["method"], "url.path": scope["path"]},
    )


def _finish_server_span(span: tracing.Span | None, method: str, route: str, status: int) -> None:
    if span is None or not span.is_recording():
        return
    span.update_name(f"{method} {route}")
    span.set_attributes({"http.route": route, "http.response.status_code": status})
    if status >= 500:
        tracing.mark_error(span, f"HTTP {status}")


def _too_large(limit: int) -> HTTPException:
    return HTTPException(413, f"the request body is larger than {limit} bytes")


class RequestContextMiddleware:
    """Tags each request with an X-Request-ID (bound into log context), limits its body, logs and
    measures it."""

    def __init__(self, app: ASGIApp, max_body_bytes: int, streamed: tuple[tuple[str, str], ...] = ()) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        # (method, path prefix) of routes that stream their bodies to disk and bound them themselves
        # (tus PATCH: at most what is left of the upload's declared length).
        self.streamed = streamed

    def _limited(self, receive: Receive) -> Receive:
        # Only for bodies without a Content-Length (chunked): the server enforces a declared length.
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body_bytes:
                    # An HTTPException passes through FastAPI's body parsing to the problem handler.
                    raise _too_large(self.max_body_bytes)
            return message

        return receive_limited

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        incoming_id, length = _read_headers(scope["headers"])
        request_id = incoming_id or uuid.uuid4().hex
        id_header = (REQUEST_ID_HEADER, request_id.encode("latin-1"))
        tokens = structlog.contextvars.bind_contextvars(request_id=request_id)
        scope.setdefault("state", {})[REQUEST_ID_STATE] = request_id
        status = 500
        started = False
        spans = contextlib.ExitStack()
        server_span = spans.enter_context(_server_span(scope)) if tracing.enabled() else None

        async def send_with_id(message: Message) -> None:
            nonlocal status, started
            if message["type"] == "http.response.start":
                started = True
                status = message["status"]
                message["headers"] = [*message.get("headers", ()), id_header]
            await send(message)

        method, path = scope["method"], scope["path"]
        unlimited = any(method == m and path.startswith(prefix) for m, prefix in self.streamed)
        try:
            if unlimited:
                await self.app(scope, receive, send_with_id)
            elif length is not None and length > self.max_body_bytes:
                await self._refuse(scope, send_with_id, _too_large(self.max_body_bytes))
            else:
                await self.app(scope, receive if length is not None else self._limited(receive), send_with_id)
        except Exception:
            log.exception("unhandled error", method=scope["method"], path=scope["path"])
            if started:
                raise
            await _send_problem(send_with_id, 500, internal_error_body(scope["path"]))
        finally:
            elapsed = time.perf_counter() - start
            route = getattr(scope.get("route"), "path", None) or metrics.UNMATCHED_ROUTE
            metrics.observe_request(scope["method"], route, status, elapsed)
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )
            structlog.contextvars.reset_contextvars(**tokens)
            if server_span is not None:
                _finish_server_span(server_span, scope["method"], route, status)
            spans.close()

    async def _refuse(self, scope: Scope, send: Send, error: HTTPException) -> None:
        body = problem_body(
            slug="payload-too-large",
            status=error.status_code,
            title="Request body too large",
            detail=error.detail,
            instance=scope["path"],
        )
        await _send_problem(send, error.status_code, body)


async def _send_problem(send: Send, status: int, body: bytes) -> None:
    headers = [(b"content-type", PROBLEM_MEDIA_TYPE.encode()), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})

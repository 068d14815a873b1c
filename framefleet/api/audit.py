"""Audit of every state-changing /v1/ request, as plain ASGI middleware around authentication.

It sits outside AuthMiddleware so that refused requests (401, 403) are recorded too. Routes that write
their own, richer audit row in the transaction of their change (the admin routes) mark the request as
audited and get no second row. Rows go to the process's AuditWriter, written in groups after the answer.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from framefleet.api.auth import STATE_KEY
from framefleet.api.middleware import request_id_of
from framefleet.keys import Principal
from framefleet.tenancy.audit import Actor, AuditWriter, event_row

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
AUDITED_STATE = "audited"
ANONYMOUS = "anonymous"


def outcome_of(status: int) -> str:
    """ok (2xx/3xx) | denied (401, 403) | failed (any other error)."""
    if status < 400:
        return "ok"
    return "denied" if status in (401, 403) else "failed"


def action_of(scope: Scope) -> str:
    """`<first tag>.<route name>` (jobs.submit, jobs.cancel), or the method and path when no route matched."""
    route = scope.get("route")
    name = getattr(route, "name", None)
    tags = getattr(route, "tags", None) or []
    if name:
        return f"{tags[0]}.{name}" if tags else str(name)
    return f"{scope['method']} {scope['path']}"[:64]


def target_of(scope: Scope, location: str | None) -> str | None:
    """What the request acted on: the created resource (Location) or the route's path parameters."""
    if location:
        return location[:255]
    params = scope.get("path_params") or {}
    return ",".join(f"{k}={v}" for k, v in sorted(params.items()))[:255] or None


class AuditMiddleware:
    def __init__(self, app: ASGIApp, *, writer: AuditWriter) -> None:
        self.app = app
        self.writer = writer

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["method"] in READ_METHODS
            or not scope.get("path", "").startswith("/v1/")
        ):
            await self.app(scope, receive, send)
            return
        status = 500
        location: str | None = None

        async def watch(message: Message) -> None:
            nonlocal status, location
            if message["type"] == "http.response.start":
                status = message["status"]
                for name, value in message.get("headers", ()):
                    if name == b"location":
                        location = value.decode("latin-1")
            await send(message)

        try:
            await self.app(scope, receive, watch)
        finally:
            state = scope.get("state", {})
            if not state.get(AUDITED_STATE):
                self.writer.add(self._row(scope, state, status, location))

    @staticmethod
    def _row(scope: Scope, state: dict[str, object], status: int, location: str | None) -> dict[str, object]:
        principal = state.get(STATE_KEY)
        client = scope.get("client")
        client_ip = client[0] if client else None
        request_id = request_id_of(scope)
        if isinstance(principal, Principal):
            actor = Actor.of(principal, client_ip=client_ip, request_id=request_id)
        else:
            actor = Actor(actor=ANONYMOUS, client_ip=client_ip, request_id=request_id)
        return event_row(
            actor,
            action=action_of(scope),
            target=target_of(scope, location),
            outcome=outcome_of(status),
            status=status,
        )

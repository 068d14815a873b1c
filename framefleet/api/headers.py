"""Security headers on every response, as plain ASGI middleware (streams pass straight through).

HSTS is sent only when the client really reached us over TLS: the request came over https (uvicorn with a
certificate, or a trusted proxy's X-Forwarded-Proto applied by uvicorn's proxy_headers), or the installation's
public URL is https (it sits behind a TLS-terminating gateway). Over plain HTTP the header means nothing.
The console (/console) gets a strict Content-Security-Policy: its own scripts, styles, media and API only,
no inline script. The offline /docs pages run an inline script, so they get none. Framing and sniffing are
stopped everywhere.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

BASE_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
)
HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")
# blob: for media and workers: the HLS/DASH players feed the video element through Media Source Extensions.
CONSOLE_CSP = (
    b"content-security-policy",
    b"default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
    b"media-src 'self' blob:; worker-src 'self' blob:; connect-src 'self'; object-src 'none'; "
    b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
)
CONSOLE_PREFIX = "/console"


class SecurityHeadersMiddleware:
    def __init__(self, app: ASGIApp, *, public_url: str) -> None:
        self.app = app
        self.public_tls = public_url.lower().startswith("https://")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        extra = [*BASE_HEADERS]
        if self.public_tls or scope.get("scheme") == "https":
            extra.append(HSTS)
        path = scope.get("path", "")
        if path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/"):
            extra.append(CONSOLE_CSP)

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", ())}
                message["headers"] = [
                    *message.get("headers", ()),
                    *(header for header in extra if header[0] not in present),
                ]
            await send(message)

        await self.app(scope, receive, with_headers)

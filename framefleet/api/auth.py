"""Authentication as plain ASGI middleware, before any route reads its body.

A route's dependencies run only after FastAPI has read and parsed the request body, so a dependency cannot
refuse an unauthenticated POST before its body is looked at (a malformed one got 422, not 401). Here the key
is checked from the headers alone; the principal is left in the request state for `deps.get_principal`.
Keys the cache can answer for (known or unknown) cost no database lookup.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import anyio
import redis
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from framefleet.api.errors import WWW_AUTHENTICATE, Problem, busy, problem_response, unavailable_problem
from framefleet.api.key_cache import KeyCache
from framefleet.console.session import (
    COOKIE,
    CSRF_HEADER,
    SAFE_METHODS,
    ConsoleSession,
    SessionCodec,
    cookie_value,
    csrf_matches,
    header_value,
)
from framefleet.db.models import utcnow
from framefleet.keys import Principal, looks_like_key
from framefleet.logging import get_logger
from framefleet.tenancy.access import refusal
from framefleet.tenancy.oidc import JwksUnavailable, TokenError, TokenRefused, looks_like_jwt
from framefleet.tenancy.ratelimit import Bucket, Decision, RateLimiter

log = get_logger(__name__)

PROTECTED_PREFIX = "/v1/"
# Console pages: a signed-in person's principal is resolved from the session cookie, but nothing is refused
# here (the page itself sends a person without one to the sign-in page).
CONSOLE_PREFIX = "/console"
PUBLIC_PATHS = frozenset({"/v1/openapi.json"})
STATE_KEY = "principal"
SESSION_STATE_KEY = "console_session"

Lookup = Callable[[str], Principal | None]
# A single sign-on token's principal; raises TokenError (401), TokenRefused (403) or JwksUnavailable (503).
TokenLookup = Callable[[str], Principal]
Touch = Callable[[int], None]
# A key's last_used_at is written at most this often per API process (not a write per request).
TOUCH_INTERVAL_SECONDS = 60.0


def unauthorized(detail: str, *, invalid: bool) -> Problem:
    challenge = WWW_AUTHENTICATE + (', error="invalid_token"' if invalid else "")
    return Problem("unauthorized", detail, headers={"WWW-Authenticate": challenge})


@dataclass(frozen=True)
class Limits:
    """The rate limiter and the installation's default buckets (Settings.rate_limit_buckets)."""

    limiter: RateLimiter
    roles: dict[str, Bucket]
    tenant: Bucket
    anonymous: Bucket

    def buckets(self, principal: Principal | None, client_ip: str | None) -> list[tuple[str, str, Bucket]]:
        """What a request spends: its key's and its tenant's buckets, or its address's when it has no key."""
        if principal is None:
            return [("client", client_ip or "unknown", self.anonymous)]
        key = principal.limits.for_role(principal.role) or self.roles[principal.role]
        tenant = principal.limits.tenant or self.tenant
        # A token's subject has the bucket a key would have: per caller, by role.
        caller = (
            ("key", str(principal.key_id)) if principal.subject is None else ("subject", principal.subject)
        )
        return [(*caller, key), ("tenant", str(principal.tenant_id), tenant)]


def rate_limited(decision: Decision) -> Problem:
    return Problem(
        "rate-limited",
        f"the {decision.scope}'s request rate limit ({decision.bucket.burst} at once, "
        f"{decision.bucket.per_second:g} a second) is spent; retry after the time in Retry-After",
        headers=decision.headers(),
        extensions={"limit": decision.scope},
    )


CSRF_REFUSED = (
    "a state-changing request signed in through the console cookie must echo the session's CSRF token in "
    "X-CSRF-Token"
)
MISSING = "send an API key in X-API-Key or as `Authorization: Bearer <key>` (or a single sign-on token)"
UNKNOWN = "the API key is unknown or revoked"


def presented_key(headers: list[tuple[bytes, bytes]]) -> str:
    """The key in X-API-Key, else in `Authorization: Bearer`; empty when neither carries one."""
    api_key = bearer = ""
    for name, value in headers:
        if name == b"x-api-key":
            api_key = value.decode("latin-1").strip()
        elif name == b"authorization":
            scheme, _, credentials = value.decode("latin-1").partition(" ")
            if scheme.lower() == "bearer":
                bearer = credentials.strip()
    return api_key or bearer


class AuthMiddleware:
    """Refuses /v1/ requests without a valid key (401) before the app sees them.

    A key comes in a header, or sealed in the console's session cookie (console/session.py): then a
    state-changing request must also carry the session's CSRF token, or it is refused (403 `csrf`).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        cache: KeyCache,
        lookup: Lookup,
        touch: Touch,
        busy_retry_after: int,
        limits: Limits | None = None,
        tokens: TokenLookup | None = None,
        sessions: SessionCodec | None = None,
    ) -> None:
        self.app = app
        self.sessions = sessions
        self.tokens = tokens
        self.limits = limits
        self.cache = cache
        self.lookup = lookup
        self.touch = touch
        self.busy_retry_after = busy_retry_after
        self._touched: dict[int, float] = {}

    async def record_use(self, key_id: int) -> None:
        """Write the key's last_used_at if this process has not done so within TOUCH_INTERVAL_SECONDS."""
        now = time.monotonic()
        last = self._touched.get(key_id)
        if last is not None and now - last < TOUCH_INTERVAL_SECONDS:
            return
        if len(self._touched) > 100_000:
            self._touched.clear()
        self._touched[key_id] = now
        try:
            await anyio.to_thread.run_sync(self.touch, key_id)
        except Exception as exc:
            # Usage tracking must never fail a request.
            log.warning("key usage not recorded", key_id=key_id, error=f"{type(exc).__name__}: {exc}")

    async def principal(self, raw: str) -> Principal | None:
        """The principal behind `raw`: from the cache, or looked up in a worker thread and cached."""
        known = self.cache.get(raw)
        if known is not None:
            return known
        if self.tokens is not None and not looks_like_key(raw) and looks_like_jwt(raw):
            # Verified in a thread: a JWKS refetch is network I/O. Errors go to the caller as 401/403/503.
            token_principal = await anyio.to_thread.run_sync(self.tokens, raw)
            self.cache.put(raw, token_principal)
            return token_principal
        if not looks_like_key(raw) or self.cache.is_unknown(raw):
            return None
        found = await anyio.to_thread.run_sync(self.lookup, raw)
        if found is None:
            self.cache.put_unknown(raw)
        else:
            self.cache.put(raw, found)
        return found

    async def take(self, principal: Principal | None, client_ip: str | None) -> Decision | None:
        """This request's rate-limit decision; None when limits are off or Redis cannot answer."""
        if self.limits is None:
            return None
        try:
            return await anyio.to_thread.run_sync(
                self.limits.limiter.take, self.limits.buckets(principal, client_ip)
            )
        except redis.RedisError as exc:
            # Fail open: Redis down is answered by the routes that need it; limits must not add an outage.
            log.warning("rate limit not checked", error=f"{type(exc).__name__}: {exc}")
            return None

    def session_of(self, scope: Scope) -> ConsoleSession | None:
        """The console session sealed in the request's cookie, if any and still valid."""
        if self.sessions is None:
            return None
        return self.sessions.open(cookie_value(scope["headers"], COOKIE))

    async def console_page(self, scope: Scope, receive: Receive, send: Send) -> None:
        """A console page: the session's principal when it is usable now; never a refusal here."""
        session = self.session_of(scope)
        if session is not None:
            client = scope.get("client")
            try:
                principal = await self.principal(session.credential)
            except (TokenError, TokenRefused, JwksUnavailable):
                principal = None
            if principal is not None and refusal(
                principal, now=utcnow(), client_ip=client[0] if client else None
            ) is None:
                state = scope.setdefault("state", {})
                state[STATE_KEY] = principal
                state[SESSION_STATE_KEY] = session
        await self.app(scope, receive, send)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and (path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")):
            await self.console_page(scope, receive, send)
            return
        if scope["type"] != "http" or not path.startswith(PROTECTED_PREFIX) or path in PUBLIC_PATHS:
            await self.app(scope, receive, send)
            return
        raw = presented_key(scope["headers"])
        if not raw:
            session = self.session_of(scope)
            if session is not None:
                if scope.get("method", "GET") not in SAFE_METHODS and not csrf_matches(
                    session.csrf, header_value(scope["headers"], CSRF_HEADER.encode())
                ):
                    await problem_response(Problem("csrf", CSRF_REFUSED), path)(scope, receive, send)
                    return
                raw = session.credential
        try:
            principal = await self.principal(raw) if raw else None
        except TokenError as exc:
            await problem_response(unauthorized(exc.detail, invalid=True), path)(scope, receive, send)
            return
        except TokenRefused as exc:
            await problem_response(Problem("forbidden", exc.detail), path)(scope, receive, send)
            return
        except JwksUnavailable as exc:
            log.warning("single sign-on key set unavailable", error=str(exc))
            problem = busy(
                "the identity provider's signing keys cannot be fetched now", self.busy_retry_after
            )
            await problem_response(problem, path)(scope, receive, send)
            return
        except Exception as exc:
            # Outside the app's exception handlers: map a database outage or a full pool here.
            outage = unavailable_problem(exc, self.busy_retry_after)
            if outage is None:
                raise
            await problem_response(outage, path)(scope, receive, send)
            return
        client = scope.get("client")
        client_ip = client[0] if client else None
        if principal is None:
            problem = unauthorized(UNKNOWN, invalid=True) if raw else unauthorized(MISSING, invalid=False)
            decision = await self.take(None, client_ip)
            if decision is not None and not decision.allowed:
                problem = rate_limited(decision)
            await problem_response(problem, path)(scope, receive, send)
            return
        refused = refusal(principal, now=utcnow(), client_ip=client_ip)
        scope.setdefault("state", {})[STATE_KEY] = principal
        if refused is not None:
            problem = (
                unauthorized(refused.detail, invalid=True)
                if refused.status == 401
                else Problem("forbidden", refused.detail)
            )
            await problem_response(problem, path)(scope, receive, send)
            return
        decision = await self.take(principal, client_ip)
        if decision is not None and not decision.allowed:
            await problem_response(rate_limited(decision), path)(scope, receive, send)
            return
        if principal.key_id is not None:
            await self.record_use(principal.key_id)
        if decision is None:
            await self.app(scope, receive, send)
            return
        limit_headers = decision.headers()

        async def send_with_limits(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in limit_headers.items():
                    headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_limits)

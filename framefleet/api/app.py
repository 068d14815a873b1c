"""The FastAPI application: `uvicorn --factory framefleet.api.app:create_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from typing import Any

import anyio
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi_offline import FastAPIOffline
from starlette.responses import RedirectResponse

from framefleet.api import errors, openapi
from framefleet.api.audit import AuditMiddleware
from framefleet.api.auth import AuthMiddleware, Limits
from framefleet.api.headers import SecurityHeadersMiddleware
from framefleet.api.hub import EventHub
from framefleet.api.key_cache import KeyCache
from framefleet.api.limits import AdmissionLimiter, StreamLimits
from framefleet.api.middleware import RequestContextMiddleware
from framefleet.api.proxies import ClientAddressMiddleware
from framefleet.api.routes import (
    batch,
    health,
    jobs,
    outputs,
    presets,
    quality,
    schedules,
    slo,
    storage,
    tenancy,
    uploads,
    webhooks,
    workers,
    workflows,
)
from framefleet.api.sse import done_grace
from framefleet.config import Settings, get_settings
from framefleet.console import app as console
from framefleet.console.session import SessionCodec
from framefleet.db.session import limits_of, session_factory
from framefleet.jobs.intake import Intake
from framefleet.keys import Principal, authenticate, token_principal, touch_key
from framefleet.logging import configure_logging, get_logger
from framefleet.observability import tracing
from framefleet.redis_client import get_redis
from framefleet.scheduling.registry import WorkerCache
from framefleet.tenancy.audit import AuditWriter
from framefleet.tenancy.oidc import TokenRefused, TokenVerifier, map_role
from framefleet.tenancy.ratelimit import RateLimiter

OPENAPI_URL = "/v1/openapi.json"

# Job specs are small; anything near this is a mistake or an attack.
MAX_BODY_BYTES = 1024 * 1024

DESCRIPTION = """Submit transcoding jobs, follow their progress and read their results.

Authenticate with `X-API-Key: <key>` or `Authorization: Bearer <key>`, or with
`Authorization: Bearer <JWT>` from the installation's single sign-on provider when it has one.
Errors are RFC 7807 `application/problem+json` documents whose `type` URI is stable per error kind."""


def key_lookup(settings: Settings) -> Callable[[str], Principal | None]:
    """Looks a key up in its own short session (run in a worker thread by the auth middleware)."""
    factory = session_factory(settings.database_url, limits_of(settings))

    def lookup(raw: str) -> Principal | None:
        with factory() as session:
            return authenticate(session, raw)

    return lookup


def token_lookup(settings: Settings) -> Callable[[str], Principal] | None:
    """Single sign-on: a bearer JWT's principal (run in a worker thread); None when SSO is off."""
    config = settings.oidc_config()
    if config is None:
        return None
    verifier = TokenVerifier(config)
    factory = session_factory(settings.database_url, limits_of(settings))

    def lookup(raw: str) -> Principal:
        identity = verifier.verify(raw)
        role = map_role(config, identity.role)
        if role is None:
            raise TokenRefused(
                f"the token's {config.role_claim!r} claim {identity.role!r} maps to no FrameFleet role "
                "(FRAMEFLEET_OIDC_ROLE_MAP)"
            )
        with factory() as session:
            principal = token_principal(
                session,
                tenant=identity.tenant,
                role=role,
                subject=identity.subject,
                expires_at=datetime.fromtimestamp(identity.expires_at, UTC),
            )
        if principal is None:
            raise TokenRefused(
                f"the token's {config.tenant_claim!r} claim {identity.tenant!r} names no tenant of this "
                "installation"
            )
        return principal

    return lookup


def key_toucher(settings: Settings) -> Callable[[int], None]:
    """Records a key's last use in its own short session (throttled by the auth middleware)."""
    factory = session_factory(settings.database_url, limits_of(settings))

    def touch(key_id: int) -> None:
        with factory() as session:
            touch_key(session, key_id)
            session.commit()

    return touch


def rate_limits(settings: Settings) -> Limits | None:
    """The limiter with the installation's default buckets; None when limits are turned off."""
    if not settings.rate_limits_enabled:
        return None
    roles, tenant, anonymous = settings.rate_limit_buckets()
    limiter = RateLimiter(get_redis(settings.redis_url))
    return Limits(limiter=limiter, roles=roles, tenant=tenant, anonymous=anonymous)


def event_hub(settings: Settings) -> EventHub:
    """The process's event hub; its idle checks read a job's final state in a worker thread."""

    async def check_ended(job_id: str) -> dict[str, Any] | None:
        return await anyio.to_thread.run_sync(jobs.ended, settings.database_url, job_id)

    return EventHub(
        settings.redis_url,
        check_ended=check_ended,
        idle_check_seconds=settings.sse_keepalive_seconds,
        grace_seconds=done_grace(settings.sse_keepalive_seconds),
        buffer=settings.sse_client_buffer_events,
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for `settings` (default: from the environment)."""
    settings = settings or get_settings()
    # In each uvicorn worker process (the factory runs there), before any request.
    tracing.configure("api")
    configure_logging(settings.log_format, settings.log_level)
    log = get_logger("framefleet.api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # Blocking work runs in at most this many threads; the database pool is sized to cover them.
        anyio.to_thread.current_default_thread_limiter().total_tokens = settings.api_threads
        app.state.event_hub = event_hub(settings)
        log.info("api started", env=settings.env, public_url=settings.public_url)
        yield
        await app.state.event_hub.close()
        app.state.intake.close()
        app.state.audit_writer.close()
        probe = getattr(app.state, "redis_probe", None)
        if probe is not None:
            probe.close()

    # Swagger UI and ReDoc served from assets installed with the package: our users' networks often have
    # no route to a CDN, and a docs page that needs one is blank there.
    app = FastAPIOffline(
        title="FrameFleet",
        version="1",
        description=DESCRIPTION,
        openapi_url=OPENAPI_URL,
        docs_url="/docs",
        redoc_url="/redoc",
        static_url="/docs/assets",
        lifespan=lifespan,
        # The request's server span is RequestContextMiddleware's (observability/tracing.py). FastAPI's own
        # request telemetry, on whenever a tracer provider exists, cost ~40 µs of CPU per request even for
        # traces the sampler drops (bench/observability_overhead.py); ours costs a sampling decision.
        telemetry={"tracing": False},
    )
    app.state.settings = settings
    # Imported here: the Celery app reads the settings when first imported.
    from framefleet.celery_app import celery_for

    app.state.celery = celery_for(settings)
    app.state.intake = Intake(
        settings.database_url, app.state.celery, fair_share_in_flight=settings.fair_share_in_flight
    )
    app.state.key_cache = KeyCache(settings.api_key_cache_seconds)
    app.state.audit_writer = AuditWriter(settings.database_url)
    app.state.worker_cache = WorkerCache(settings.admission_cache_seconds)
    app.state.stream_limits = StreamLimits(
        per_process=settings.sse_max_streams,
        per_tenant=settings.sse_max_streams_per_tenant,
        retry_after=settings.api_retry_after_seconds,
    )
    errors.install(app)
    openapi.install(app)
    # The last added runs first: the client's address, security headers and CORS, request context (id, log,
    # metrics), admission, audit (so refusals are recorded), then authentication and rate limits.
    # One bearer-token lookup for the API and the console's single sign-on: tokens are checked one way.
    tokens = token_lookup(settings)
    app.add_middleware(
        AuthMiddleware,
        cache=app.state.key_cache,
        lookup=key_lookup(settings),
        touch=key_toucher(settings),
        busy_retry_after=settings.api_retry_after_seconds,
        limits=rate_limits(settings),
        tokens=tokens,
        sessions=SessionCodec(settings.secret_key),
    )
    app.add_middleware(AuditMiddleware, writer=app.state.audit_writer)
    app.add_middleware(
        AdmissionLimiter,
        max_in_flight=settings.api_max_in_flight,
        max_waiting=settings.api_max_waiting,
        wait_seconds=settings.api_admission_wait_seconds,
        retry_after=settings.api_retry_after_seconds,
    )
    app.add_middleware(
        RequestContextMiddleware, max_body_bytes=MAX_BODY_BYTES, streamed=(("PATCH", "/v1/uploads/"),)
    )
    if settings.cors_origins:
        # Only the listed origins are ever echoed back; no credentials (keys travel in headers).
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=["X-API-Key", "Authorization", "Content-Type", "Idempotency-Key", "Last-Event-ID"],
            expose_headers=[
                "Location",
                "X-Request-ID",
                "Retry-After",
                "RateLimit-Limit",
                "RateLimit-Remaining",
                "RateLimit-Reset",
                "RateLimit-Policy",
            ],
            max_age=600,
        )
    app.add_middleware(SecurityHeadersMiddleware, public_url=settings.public_url)
    # Outermost: every layer inside sees the one client address (proxies.py).
    app.add_middleware(ClientAddressMiddleware, trusted=settings.trusted_proxies)
    app.include_router(batch.router)
    app.include_router(jobs.router)
    app.include_router(quality.router)
    app.include_router(presets.router)
    app.include_router(presets.templates_router)
    app.include_router(workers.router)
    app.include_router(slo.router)
    app.include_router(tenancy.router)
    app.include_router(webhooks.router)
    app.include_router(schedules.router)
    app.include_router(workflows.router)
    app.include_router(outputs.router)
    app.include_router(uploads.router)
    app.include_router(storage.router)
    app.include_router(outputs.share_router)
    app.include_router(health.router)
    console.install(app, settings=settings, tokens=tokens)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_alias() -> RedirectResponse:
        """Public: where tools look for the document by default."""
        return RedirectResponse(OPENAPI_URL, status_code=308)

    return app

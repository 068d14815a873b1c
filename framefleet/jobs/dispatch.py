"""Hand a queued job to its Celery queue. The API, the beat's retry promotion, aging and reconciler, and a
worker handing a job back all use this."""

from __future__ import annotations

from typing import TYPE_CHECKING

from framefleet.logging import get_logger
from framefleet.queues import queue_for

if TYPE_CHECKING:
    from celery import Celery

    from framefleet.db.models import Job

log = get_logger(__name__)


def queue_priority(job: Job) -> str:
    """The priority queue the job waits in: its effective priority once aging has raised it."""
    return job.effective_priority or job.priority


def dispatch(job: Job, *, celery: Celery | None = None) -> bool:
    """Publish the job's run task on `<pool>.<priority>`; False (logged) when the broker cannot be reached.

    A failed publish loses nothing: the job stays queued in the database and the reconciler publishes it
    again. `celery` defaults to the process-wide app.
    """
    from framefleet.celery_app import RUN_JOB_TASK

    if celery is None:
        # Imported late: the app reads settings (the broker URL) when first imported.
        from framefleet.celery_app import celery_for
        from framefleet.config import get_settings

        celery = celery_for(get_settings())
    try:
        celery.send_task(RUN_JOB_TASK, args=[job.id], queue=queue_for(job.pool, queue_priority(job)))
    except Exception as exc:
        log.error(
            "dispatch failed; the job stays queued", job_id=job.id, error=f"{type(exc).__name__}: {exc}"
        )
        return False
    return True

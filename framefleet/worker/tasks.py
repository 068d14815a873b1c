"""The Celery task: claim the job (compare-and-set), run the pipeline, record how it ended.

The task never raises: every ending is written to the database through the state machine, and the message
is acknowledged afterwards (acks_late), so a worker that dies mid-job leaves the message to be redelivered.
"""

from __future__ import annotations

import os
import socket
from typing import Any

import structlog
from celery.signals import worker_process_init

from framefleet.celery_app import RUN_JOB_TASK, app
from framefleet.config import get_settings
from framefleet.core.failures import FailureClass, JobFailure
from framefleet.core.states import JobState, TransitionError
from framefleet.db.models import Job, Tenant, utcnow
from framefleet.db.session import dispose_all, session_scope
from framefleet.jobs import state_machine
from framefleet.jobs.service import cancel_key
from framefleet.logging import configure_logging, get_logger
from framefleet.redis_client import get_redis, reset_clients
from framefleet.worker.pipeline import JobCanceled, run_pipeline

log = get_logger("framefleet.worker")


@worker_process_init.connect
def _after_fork(**_: object) -> None:
    # Connections inherited from the parent process must not be shared with it.
    dispose_all()
    reset_clients()
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@app.task(name=RUN_JOB_TASK, bind=True, acks_late=True, ignore_result=True)
def run_job(self: object, job_id: str) -> None:
    """Run one job if this delivery can claim it."""
    settings = get_settings()
    redis_client = get_redis()
    worker = worker_identity()
    structlog.contextvars.clear_contextvars()
    try:
        with session_scope() as session:
            current = session.get(Job, job_id)
            if current is None:
                log.warning("job not found; dropping message", job_id=job_id)
                return
            attempt = current.attempt + 1
            job = state_machine.transition(
                session,
                job_id,
                JobState.running,
                reason="picked up by worker",
                expect=[JobState.queued],
                worker=worker,
                values={"attempt": attempt, "worker": worker, "started_at": utcnow(), "progress": 0.0},
            )
            tenant = session.get(Tenant, job.tenant_id)
            tenant_name = tenant.name if tenant else str(job.tenant_id)
    except TransitionError as exc:
        # Canceled while queued, or another delivery already owns it: this message has nothing to do.
        log.info("job not claimable; skipping", job_id=job_id, reason=exc.reason)
        return
    structlog.contextvars.bind_contextvars(job_id=job_id, tenant=tenant_name, attempt=attempt, worker=worker)
    state_machine.announce(
        redis_client, job, reason="picked up by worker", ttl_seconds=settings.events_ttl_seconds
    )
    log.info("job started", priority=job.priority)

    values: dict[str, Any] = {"progress": 100.0}
    target, reason = JobState.succeeded, "all outputs published"
    try:
        run_pipeline(job, settings=settings, redis_client=redis_client, attempt=attempt)
    except JobCanceled:
        target, reason, values = (
            JobState.canceled,
            "canceled by client",
            {"failure_class": FailureClass.canceled.value},
        )
    except JobFailure as failure:
        target, reason = JobState.failed, failure.message
        values = {"failure_class": failure.failure_class.value, "error": failure.message}
    except Exception as exc:  # the worker must survive anything a job does
        log.exception("job crashed")
        target, reason = JobState.failed, f"internal error: {type(exc).__name__}"
        values = {"failure_class": FailureClass.internal.value, "error": reason}
    finish(job_id, target, reason=reason, worker=worker, attempt=attempt, values=values)
    redis_client.delete(cancel_key(job_id))
    structlog.contextvars.clear_contextvars()


def finish(
    job_id: str, target: JobState, *, reason: str, worker: str, attempt: int, values: dict[str, Any]
) -> None:
    """Record the attempt's ending, unless the job was taken from this attempt meanwhile."""
    settings = get_settings()
    try:
        with session_scope() as session:
            job = state_machine.transition(
                session,
                job_id,
                target,
                reason=reason,
                expect=[JobState.running],
                worker=worker,
                attempt=attempt,
                values=values,
            )
    except TransitionError as exc:
        log.warning("could not record job ending", target=target.value, reason=exc.reason)
        return
    state_machine.announce(get_redis(), job, reason=reason, ttl_seconds=settings.events_ttl_seconds)
    log.info("job ended", state=target.value, failure_class=values.get("failure_class"), reason=reason)

"""Hand queued jobs to their Celery queues. The API's intake, the beat's retry promotion, aging and
reconciler, and a worker handing a job back all use this."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING

from framefleet.logging import get_logger
from framefleet.observability import tracing
from framefleet.queues import queue_for, queue_name

if TYPE_CHECKING:
    from celery import Celery

    from framefleet.db.models import Job
    from framefleet.scheduling.broker import Snapshot

log = get_logger(__name__)


def queue_priority(job: Job) -> str:
    """The priority queue the job waits in: its effective priority once aging has raised it."""
    return job.effective_priority or job.priority


def dispatch(job: Job, *, celery: Celery | None = None) -> bool:
    """Publish the job's run task on `<pool>.<priority>`; False (logged) when the broker cannot be reached.

    A failed publish loses nothing: the job stays queued in the database and the reconciler publishes it
    again. `celery` defaults to the process-wide app.
    """
    # Imported late: the Celery app reads the settings (the broker URL) when first imported.
    from framefleet.celery_app import RUN_JOB_TASK

    celery = celery or _process_app()
    queue = queue_for(job.pool, queue_priority(job))
    try:
        with _publish_span(job, queue.name) as headers:
            celery.send_task(RUN_JOB_TASK, args=[job.id], queue=queue, headers=headers)
    except Exception as exc:
        log.error(
            "dispatch failed; the job stays queued", job_id=job.id, error=f"{type(exc).__name__}: {exc}"
        )
        return False
    return True


def dispatch_chunks(
    job: Job, job_attempt: int, indexes: Sequence[int], *, celery: Celery | None = None
) -> bool:
    """Publish chunk (or join) tasks of the job's attempt on the job's own queue, so a live job's chunks
    are taken before any batch work. False (logged) when the broker cannot be reached: the chunks stay
    queued in the database and the reaper's chunk pass publishes them again."""
    from framefleet.celery_app import RUN_CHUNK_TASK

    celery = celery or _process_app()
    queue = queue_for(job.pool, queue_priority(job))
    try:
        with celery.producer_or_acquire() as producer, producer.batch():
            for index in indexes:
                # Each message carries its publisher's context: the chunks run in the job's trace.
                with _publish_span(job, queue.name, name="chunk.publish", chunk=index) as headers:
                    celery.send_task(
                        RUN_CHUNK_TASK,
                        args=[job.id, job_attempt, index],
                        queue=queue,
                        producer=producer,
                        headers=headers,
                    )
    except Exception as exc:
        log.error("chunk dispatch failed", job_id=job.id, error=f"{type(exc).__name__}: {exc}")
        return False
    return True


def dispatch_many(jobs: Sequence[Job], *, celery: Celery | None = None) -> bool:
    """Publish the run tasks of several jobs in one Redis round trip (a kombu publish batch).

    A batch is sent once, without the retries of a single publish: if it fails, each job is published on
    its own (retried by Celery). A job whose message did reach the broker is then published twice, and the
    state machine's compare-and-set lets only one of them run it. False when some job could not be sent.
    """
    if len(jobs) == 1:
        # A pipeline of one costs more than a plain publish, and would lose the publish retries.
        return dispatch(jobs[0], celery=celery)
    from framefleet.celery_app import RUN_JOB_TASK

    celery = celery or _process_app()
    try:
        with celery.producer_or_acquire() as producer, producer.batch():
            for job in jobs:
                queue = queue_for(job.pool, queue_priority(job))
                with _publish_span(job, queue.name) as headers:
                    celery.send_task(
                        RUN_JOB_TASK, args=[job.id], queue=queue, producer=producer, headers=headers
                    )
    except Exception as exc:
        log.warning("batch publish failed; publishing one by one", error=f"{type(exc).__name__}: {exc}")
        return all([dispatch(job, celery=celery) for job in jobs])
    return True


def move(job: Job, old_priority: str, *, celery: Celery | None = None, snap: Snapshot | None = None) -> bool:
    """Publish a queued job on the queue of its (new) effective priority and take its message out of the
    `old_priority` queue: aging and a client's priority change (queue hopping) both move jobs this way.

    The old message, if a worker takes it first, is harmless: the claim's compare-and-set lets only one
    delivery run the job. `snap` is a broker snapshot the caller already holds (default: read the old queue).
    """
    from framefleet.redis_client import get_redis
    from framefleet.scheduling import broker

    published = dispatch(job, celery=celery)
    old_queue = queue_name(job.pool, old_priority)
    client = get_redis()
    snap = snap or broker.snapshot(client, delivered_within=0, queue_names=[old_queue])
    for key, raw in snap.waiting.get(job.id, []):
        if key.split(broker.PRIORITY_SEP)[0] == old_queue:
            broker.remove(client, key, raw)
    return published


@contextlib.contextmanager
def _publish_span(
    job: Job, queue: str, *, name: str = "job.publish", chunk: int | None = None
) -> Iterator[dict[str, str] | None]:
    """The `job.publish` (or `chunk.publish`) span around one message, and the headers that carry its
    context to the worker.

    Its parent is the current span (the intake's, in the API) or else the context the job row keeps, so a
    job published again later (a retry, the reconciler, aging) stays in the trace it began in.
    """
    if not tracing.enabled():
        yield None
        return
    parent = None if tracing.in_span() else tracing.context_of(job.trace_context)
    attributes: dict[str, str | int] = {"framefleet.job_id": job.id, "messaging.destination.name": queue}
    if chunk is not None:
        attributes["framefleet.chunk"] = chunk
    with tracing.span(name, kind=tracing.SpanKind.PRODUCER, parent=parent, attributes=attributes):
        yield tracing.inject({})


def _process_app() -> Celery:
    from framefleet.celery_app import celery_for
    from framefleet.config import get_settings

    return celery_for(get_settings())

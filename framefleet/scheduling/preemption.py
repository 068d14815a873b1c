"""Preemption: a `live` job that waits while every worker of its pool is busy takes a slot from the
lowest-priority running job (off by default; FRAMEFLEET_PREEMPT_POOLS, FRAMEFLEET_PREEMPT_AFTER_SECONDS).

The beat leader decides; the worker stops. The stop travels on the job's cancel key, the one a client's
cancel uses, so the worker's existing poll kills ffmpeg's process group the same way. The value says it is
a preemption of one attempt (`preempt:<attempt>:<reason>`), so the worker records a hand-back
(running → queued through the state machine, republished to its queue, `failures` unchanged) instead of a
cancel. A client's cancel overwrites the value and wins; a marker meant for an earlier attempt is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import sqlalchemy as sa

from framefleet.core.spec import PRIORITY_ORDER, Priority
from framefleet.core.states import JobState
from framefleet.db.models import Job, JobChunk, Worker, utcnow
from framefleet.db.session import session_scope
from framefleet.jobs.service import cancel_key
from framefleet.logging import get_logger
from framefleet.redis_client import get_redis
from framefleet.scheduling.registry import is_live

if TYPE_CHECKING:
    from framefleet.config import Settings

log = get_logger(__name__)

PREFIX = "preempt:"
# How long a stop request lives if no worker ever reads it (the job ended meanwhile).
MARKER_TTL_SECONDS = 3600
# A live job that was promised a slot is not counted again for this long: the slot it freed may look busy
# until the worker's next heartbeat, and the live job needs a moment to be claimed.
PROMISE_SECONDS = 30


def promise_key(job_id: str) -> str:
    """Set while a live job waits for the slot a preemption freed for it."""
    return f"framefleet:job:{job_id}:preempt-promise"


# ---------------------------------------------------------------- pure


@dataclass(frozen=True)
class Running:
    job_id: str
    attempt: int
    priority: str  # the queue it came from (effective priority)
    started_at: datetime | None
    stopping: bool  # a preemption of this attempt was already asked for


def choose_victims(*, waiting_live: int, idle_slots: int, running: Sequence[Running]) -> list[Running]:
    """The running jobs to stop so that `waiting_live` overdue live jobs (none of them yet promised a slot)
    get one: lowest priority first, and among equals the one that started last (it loses the least work).
    Live jobs, and jobs already being stopped, are never chosen."""
    need = waiting_live - idle_slots
    if need <= 0:
        return []
    candidates = [job for job in running if not job.stopping and Priority(job.priority) is not Priority.live]
    candidates.sort(
        key=lambda job: (
            -PRIORITY_ORDER.index(Priority(job.priority)),
            -(job.started_at.timestamp() if job.started_at else 0.0),
        )
    )
    return candidates[:need]


def marker(attempt: int, reason: str) -> str:
    """The cancel key's value asking `attempt` to stop for a preemption."""
    return f"{PREFIX}{attempt}:{reason}"


def stops(value: str | bytes | None, attempt: int) -> bool:
    """Whether the cancel key's value stops this attempt: a client's cancel always does, a preemption only
    the attempt it was meant for."""
    if value is None:
        return False
    text = value.decode() if isinstance(value, bytes) else value
    if not text.startswith(PREFIX):
        return True
    return text[len(PREFIX) :].partition(":")[0] == str(attempt)


def preempted_reason(value: str | bytes | None, attempt: int) -> str | None:
    """The history reason when the value is a preemption of this attempt; None for a cancel (or nothing)."""
    if value is None:
        return None
    text = value.decode() if isinstance(value, bytes) else value
    if not text.startswith(PREFIX):
        return None
    meant_for, _, reason = text[len(PREFIX) :].partition(":")
    return reason if meant_for == str(attempt) else None


# ---------------------------------------------------------------- the beat's pass


def preempt(settings: Settings, *, now: datetime | None = None) -> list[str]:
    """For each pool with preemption on: stop as many low-priority running jobs as overdue live jobs need
    (ids of the jobs asked to stop)."""
    stopped: list[str] = []
    for pool in settings.preempt_pools:
        stopped += _preempt_pool(settings, pool, now or utcnow())
    return stopped


def _preempt_pool(settings: Settings, pool: str, now: datetime) -> list[str]:
    overdue = now - timedelta(seconds=settings.preempt_after_seconds)
    queue = sa.func.coalesce(Job.effective_priority, Job.priority)
    with session_scope() as session:
        waiting = list(
            session.scalars(
                sa.select(Job.id)
                .where(
                    Job.state == JobState.queued.value,
                    Job.pool == pool,
                    queue == Priority.live.value,
                    Job.queued_at < overdue,
                )
                .order_by(Job.queued_at)
                .limit(100)
            )
        )
        if not waiting:
            return []
        slots = [
            row
            for row in session.scalars(
                sa.select(Worker).where(Worker.pool == pool, Worker.stopped_at.is_(None))
            )
            if is_live(row, settings, now)
        ]
        if not slots:
            return []  # nobody to make room on: preempting would only lose work
        # A split attempt (its chunks spread over the pool) is never a victim: handing back one chunk
        # frees one slot for a moment while the attempt goes on, and the whole attempt is too much to lose.
        split = sa.exists().where(JobChunk.job_id == Job.id, JobChunk.job_attempt == Job.attempt)
        rows = session.execute(
            sa.select(Job.id, Job.attempt, queue.label("queue"), Job.started_at).where(
                Job.state == JobState.running.value, Job.pool == pool, ~split
            )
        ).all()
    client = get_redis()
    promised = client.mget([promise_key(job_id) for job_id in waiting])
    waiting = [job_id for job_id, promise in zip(waiting, promised, strict=True) if promise is None]
    if not waiting:
        return []
    markers = client.mget([cancel_key(row.id) for row in rows]) if rows else []
    running = [
        Running(
            row.id, row.attempt, row.queue, row.started_at, preempted_reason(value, row.attempt) is not None
        )
        for row, value in zip(rows, markers, strict=True)
    ]
    idle = sum(1 for row in slots if row.current_job is None)
    victims = choose_victims(waiting_live=len(waiting), idle_slots=idle, running=running)
    stopped = []
    for victim, live_job in zip(victims, waiting, strict=False):
        reason = f"preempted by live job {live_job} (waited over {settings.preempt_after_seconds:g} s)"
        # NX: a client's cancel already there stays a cancel.
        if client.set(
            cancel_key(victim.job_id), marker(victim.attempt, reason), nx=True, ex=MARKER_TTL_SECONDS
        ):
            client.set(promise_key(live_job), victim.job_id, ex=PROMISE_SECONDS)
            log.info(
                "preempting job", job_id=victim.job_id, priority=victim.priority, pool=pool, live_job=live_job
            )
            stopped.append(victim.job_id)
    return stopped

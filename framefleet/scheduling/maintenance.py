"""The beat's maintenance tasks, run by one leader at a time:

- reaper: a `running` job whose worker stopped heartbeating (killed, OOM-killed, partitioned) goes back to
  `retrying` as worker_lost (or `canceled`, if the client asked), through the same rules as any failure;
- retry promotion: a `retrying` job whose `retry_at` has come is queued and published again;
- reconciler: a `queued` job whose message the broker lost (Redis restarted without persistence, a crash
  between commit and publish) is published again;
- aging: a job waiting longer than the aging step is republished one priority higher per step;
- dependencies: jobs waiting for their parents are released or canceled once the parents ended;
- schedules: cron schedules whose time has come submit their job, each fire once;
- retention: outputs, inputs and work files past their retention are deleted, in bounded batches.

Every change is a compare-and-set on the job row, so a task that races a worker (or a second beat that
briefly believes it leads) changes nothing twice. Leadership is a Redis key with a TTL that the leader
renews on every tick; another beat takes over within the TTL when the leader dies.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import redis
import sqlalchemy as sa

from framefleet.config import Settings
from framefleet.core.failures import FailureClass
from framefleet.core.spec import PRIORITY_ORDER
from framefleet.core.states import JobState, TransitionError
from framefleet.db.models import Job, WebhookEndpoint, Worker, utcnow
from framefleet.db.session import session_scope
from framefleet.jobs import state_machine
from framefleet.jobs.dispatch import dispatch, dispatch_chunks, move, queue_priority
from framefleet.lifecycle import retention, staging
from framefleet.logging import get_logger
from framefleet.observability import metrics
from framefleet.queues import POOLS, queue_name
from framefleet.redis_client import get_redis
from framefleet.scheduling import broker, chunks, fairshare, preemption
from framefleet.scheduling.aging import aged_priority, is_higher
from framefleet.scheduling.outcomes import fail_attempt
from framefleet.storage import uploads
from framefleet.tenancy import quotas
from framefleet.workflows import dependencies, schedules

if TYPE_CHECKING:
    from celery import Celery

log = get_logger("framefleet.beat")

LEADER_KEY = "framefleet:beat:leader"
BATCH = 500
TICK_SECONDS = 0.25

# Take the lock if free, renew it if ours; 1 when we lead after the call.
_LEAD = """
local holder = redis.call('GET', KEYS[1])
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
if not holder then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
"""
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


class LeaderLock:
    """Single leader through a Redis key with a TTL."""

    def __init__(
        self, client: Callable[[], redis.Redis], ttl_seconds: float, identity: str | None = None
    ) -> None:
        self.client = client
        self.ttl_ms = int(ttl_seconds * 1000)
        self.identity = identity or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"

    def lead(self) -> bool:
        """Acquire or renew; False when another beat leads (or Redis cannot be reached)."""
        try:
            return bool(self.client().eval(_LEAD, 1, LEADER_KEY, self.identity, self.ttl_ms))  # type: ignore[no-untyped-call]
        except redis.RedisError as exc:
            log.warning("leader lock unavailable", error=f"{type(exc).__name__}: {exc}")
            return False

    def release(self) -> None:
        with contextlib.suppress(redis.RedisError):
            self.client().eval(_RELEASE, 1, LEADER_KEY, self.identity)  # type: ignore[no-untyped-call]


# ---------------------------------------------------------------- reaper


def _worker_gone(
    job: Any, row: Worker | None, key_alive: bool, settings: Settings, now: datetime
) -> str | None:
    """Why the job's worker is presumed gone, or None while it may still be running the job."""
    ttl = timedelta(seconds=settings.heartbeat_ttl_seconds)
    if row is None:
        started = job.started_at or job.updated_at
        if not key_alive and started < now - ttl:
            return "no heartbeat ever recorded"
        return None
    if row.stopped_at is not None:
        return "its process exited"
    if row.last_heartbeat < now - ttl and not key_alive:
        age = (now - row.last_heartbeat).total_seconds()
        return f"no heartbeat for {age:.0f}s"
    # Alive, but no longer running this job (it could not record the ending, say): orphaned.
    settled = job.started_at is not None and row.last_heartbeat > job.started_at + 2 * timedelta(
        seconds=settings.heartbeat_interval_seconds
    )
    if settled and (row.current_job != job.id or row.current_attempt != job.attempt):
        return "its worker is alive but no longer runs it"
    return None


def reap_dead_workers(
    settings: Settings, *, celery: Celery | None = None, now: datetime | None = None
) -> list[str]:
    """Take back every running job whose worker is gone; returns their ids."""
    now = now or utcnow()
    with session_scope() as session:
        running = session.execute(
            sa.select(Job.id, Job.worker, Job.attempt, Job.started_at, Job.updated_at).where(
                Job.state == JobState.running.value
            )
        ).all()
        # A job split into chunks is owned by its chunks: their workers are judged instead of the job's.
        split = chunks.in_chunks(session, [(r.id, r.attempt) for r in running])
        pieces = chunks.running(session, split)
        running = [r for r in running if r.id not in split]
        ids = {r.worker for r in running if r.worker} | {p.worker for p in pieces if p.worker}
        rows = {w.id: w for w in session.scalars(sa.select(Worker).where(Worker.id.in_(ids)))} if ids else {}
        session.expunge_all()
    if not running and not pieces:
        return []
    alive = _keys_alive(sorted(ids))
    recovered = _reap_chunks(pieces, rows, alive, settings, celery, now)
    for job in running:
        why = _worker_gone(job, rows.get(job.worker), alive.get(job.worker, False), settings, now)
        if why is None:
            continue
        message = f"worker {job.worker} lost: {why}"
        try:
            with session_scope() as session:
                ended = fail_attempt(
                    session,
                    job.id,
                    FailureClass.worker_lost,
                    message,
                    worker=job.worker,
                    attempt=job.attempt,
                    settings=settings,
                    now=now,
                )
        except TransitionError as exc:
            log.info("job changed while reaping; left alone", job_id=job.id, reason=exc.reason)
            continue
        log.warning(
            "recovered job from a lost worker", job_id=job.id, worker=job.worker, state=ended.state, why=why
        )
        _announce(ended, message, settings)
        recovered.append(job.id)
    return recovered


def _reap_chunks(
    pieces: list[chunks.RunningChunk],
    rows: dict[str, Worker],
    alive: dict[str, bool],
    settings: Settings,
    celery: Celery | None,
    now: datetime,
) -> list[str]:
    """Put each chunk whose worker is gone back in the queue alone; a chunk lost too often fails its
    attempt as worker_lost (retried whole by the usual rules). Returns the job ids touched."""
    touched = []
    for piece in pieces:
        why = _worker_gone(
            piece, rows.get(piece.worker or ""), alive.get(piece.worker or "", False), settings, now
        )
        if why is None:
            continue
        message = f"worker {piece.worker} lost running chunk {piece.index}: {why}"
        delivery = chunks.Delivery(
            piece.id, piece.attempt, piece.index, piece.kind, piece.delivery, chunks.NO_CHUNK
        )
        ended: Job | None = None
        try:
            with session_scope() as session:
                if piece.delivery >= chunks.MAX_CHUNK_DELIVERIES:
                    ended = fail_attempt(
                        session,
                        piece.id,
                        FailureClass.worker_lost,
                        message,
                        worker=piece.worker,
                        attempt=piece.attempt,
                        settings=settings,
                        now=now,
                    )
                    handed = False
                else:
                    handed = chunks.hand_back(session, delivery=delivery)
                job = session.get(Job, piece.id)
                session.expunge_all()
        except TransitionError as exc:
            log.info("job changed while reaping a chunk; left alone", job_id=piece.id, reason=exc.reason)
            continue
        if ended is not None:
            _announce(ended, message, settings)
            staging.discard(settings, job_id=piece.id, job_attempt=piece.attempt)
        elif handed and job is not None:
            dispatch_chunks(job, piece.attempt, [piece.index], celery=celery)
        log.warning("recovered chunk from a lost worker", job_id=piece.id, chunk=piece.index, why=why)
        touched.append(piece.id)
    return touched


def _keys_alive(worker_ids: list[str]) -> dict[str, bool]:
    from framefleet.worker.heartbeat import worker_key

    if not worker_ids:
        return {}
    try:
        pipe = get_redis().pipeline(transaction=False)
        for worker_id in worker_ids:
            pipe.exists(worker_key(worker_id))
        return {w: bool(n) for w, n in zip(worker_ids, pipe.execute(), strict=True)}
    except redis.RedisError:
        # Without Redis the database heartbeat alone decides (it is the one the workers must renew).
        return {}


def prune_workers(settings: Settings, now: datetime | None = None) -> int:
    """Forget workers not seen for workers_known_seconds."""
    since = (now or utcnow()) - timedelta(seconds=settings.workers_known_seconds)
    with session_scope() as session:
        result = session.execute(sa.delete(Worker).where(Worker.last_heartbeat < since))
        return int(result.rowcount)  # type: ignore[attr-defined]


# ---------------------------------------------------------------- retries


def promote_due_retries(
    settings: Settings, *, celery: Celery | None = None, now: datetime | None = None
) -> list[str]:
    """Queue and publish every `retrying` job whose retry_at has come."""
    now = now or utcnow()
    with session_scope() as session:
        due = session.scalars(
            sa.select(Job.id)
            .where(Job.state == JobState.retrying.value, sa.or_(Job.retry_at.is_(None), Job.retry_at <= now))
            .order_by(Job.retry_at)
            .limit(BATCH)
        ).all()
    promoted = []
    for job_id in due:
        try:
            with session_scope() as session:
                job = state_machine.transition(
                    session, job_id, JobState.queued, reason="retry due", expect=[JobState.retrying]
                )
        except TransitionError:
            continue  # canceled meanwhile
        dispatch(job, celery=celery)
        _announce(job, "retry due", settings)
        promoted.append(job_id)
    return promoted


# ---------------------------------------------------------------- reconciler and aging


def reconcile_broker(
    settings: Settings,
    *,
    celery: Celery | None = None,
    now: datetime | None = None,
    snap: broker.Snapshot | None = None,
) -> list[str]:
    """Publish again every queued job (older than the grace) that has no message in the broker."""
    now = now or utcnow()
    cutoff = now - timedelta(seconds=settings.reconcile_grace_seconds)
    with session_scope() as session:
        jobs = _routing_of(
            session,
            Job.state == JobState.queued.value,
            sa.func.coalesce(Job.queued_at, Job.updated_at) < cutoff,
        )
        # Chunks (and joins) queued in the database, of running split jobs: their messages too can be lost.
        pieces = chunks.queued_before(session, cutoff)
        session.expunge_all()
    if not jobs and not pieces:
        return []
    snap = snap or broker.snapshot(get_redis(), delivered_within=settings.reconcile_grace_seconds)
    republished = []
    for job in jobs:
        if snap.has(job.id):
            continue
        if dispatch(job, celery=celery):
            republished.append(job.id)
    for job, attempt, indexes in pieces:
        # A chunk message names its job first, so any waiting message of the job counts: a lost one is
        # published again once the job's others are taken. A duplicate claims nothing.
        if not snap.has(job.id) and dispatch_chunks(job, attempt, indexes, celery=celery):
            republished.append(job.id)
    if republished:
        log.warning("republished jobs the broker had lost", count=len(republished))
    return republished


def age_waiting_jobs(
    settings: Settings,
    *,
    celery: Celery | None = None,
    now: datetime | None = None,
    snap: broker.Snapshot | None = None,
) -> list[str]:
    """Raise the effective priority of jobs that waited past the aging step, and move their message."""
    if settings.aging_seconds <= 0:
        return []
    now = now or utcnow()
    oldest = now - timedelta(seconds=settings.aging_seconds)
    with session_scope() as session:
        waiting = _routing_of(
            session, Job.state == JobState.queued.value, Job.queued_at < oldest, limit=BATCH
        )
    moves: list[tuple[Job, str, str]] = []
    for job in waiting:
        current = queue_priority(job)
        assert job.queued_at is not None
        target = aged_priority(
            job.priority,
            (now - job.queued_at).total_seconds(),
            step_seconds=settings.aging_seconds,
            ceiling=settings.aging_max_priority,
        )
        if is_higher(target, current):
            moves.append((job, current, target.value))
    if not moves:
        return []
    snap = snap or broker.snapshot(get_redis(), delivered_within=0)
    promoted = []
    for job, current, new in moves:
        with session_scope() as session:
            changed = session.execute(
                sa.update(Job)
                .where(
                    Job.id == job.id,
                    Job.state == JobState.queued.value,
                    sa.func.coalesce(Job.effective_priority, Job.priority) == current,
                )
                .values(effective_priority=new)
            ).rowcount  # type: ignore[attr-defined]
        if changed != 1:
            continue  # claimed, canceled or aged by someone else meanwhile
        job.effective_priority = new
        # The old message would only be dropped by the claim's compare-and-set later; take it out now.
        move(job, current, celery=celery, snap=snap)
        log.info("aged job", job_id=job.id, priority=job.priority, now_in=new)
        promoted.append(job.id)
    return promoted


def expire_uploads(settings: Settings, now: datetime | None = None) -> int:
    """Delete unfinished uploads past their expiry (storage/uploads.py); how many."""
    with session_scope(settings.database_url) as session:
        return uploads.expire(session, settings=settings, now=now or utcnow())


def queue_levels(
    rows: list[tuple[str, str, datetime | None, int]], now: datetime
) -> tuple[dict[str, int], dict[str, float]]:
    """Depth and oldest-job age of every queue (`<pool>.<priority>`), empty ones included as 0, from
    (pool, effective priority, oldest queued_at, count) rows."""
    depth = {queue_name(pool, priority): 0 for pool in POOLS for priority in PRIORITY_ORDER}
    oldest = dict.fromkeys(depth, 0.0)
    for pool, priority, first, count in rows:
        name = queue_name(pool, priority)
        depth[name] = depth.get(name, 0) + count
        if first is not None:
            oldest[name] = max(oldest.get(name, 0.0), (now - first).total_seconds())
    return depth, oldest


def over_limit(rows: list[tuple[str, datetime | None, float | None]], now: datetime) -> dict[str, int]:
    """Running jobs past their run-time limit per pool (every pool, 0 included), from (pool, started_at,
    run_limit_seconds) rows. The worker's own timer ends such a job; one still running means that timer or
    the worker is stuck."""
    counts = dict.fromkeys(POOLS, 0)
    for pool, started, limit in rows:
        if started is not None and limit is not None and (now - started).total_seconds() > limit:
            counts[pool] = counts.get(pool, 0) + 1
    return counts


def measure_queues(settings: Settings, now: datetime | None = None) -> None:
    """Refresh the beat's fleet series from the database: queues (one grouped query), running jobs (as many
    as the fleet has slots) and webhook endpoints by status."""
    effective = sa.func.coalesce(Job.effective_priority, Job.priority)
    now = now or utcnow()
    with session_scope() as session:
        rows = session.execute(
            sa.select(Job.pool, effective, sa.func.min(Job.queued_at), sa.func.count())
            .where(Job.state == JobState.queued)
            .group_by(Job.pool, effective)
        ).all()
        running = session.execute(
            sa.select(Job.pool, Job.started_at, Job.run_limit_seconds).where(Job.state == JobState.running)
        ).all()
        statuses = session.execute(
            sa.select(WebhookEndpoint.status, sa.func.count())
            .where(WebhookEndpoint.kind == "endpoint", WebhookEndpoint.enabled.is_(True))
            .group_by(WebhookEndpoint.status)
        ).all()
    depth, oldest = queue_levels([tuple(row) for row in rows], now)  # type: ignore[misc]
    endpoints = dict.fromkeys(metrics.WEBHOOK_STATUSES, 0) | {status: count for status, count in statuses}
    metrics.QUEUES.update(
        depth,
        oldest,
        over_limit=over_limit([tuple(row) for row in running], now),  # type: ignore[misc]
        endpoints=endpoints,
    )


def _routing_of(session: Any, *where: Any, limit: int | None = None) -> list[Job]:
    """Detached jobs carrying only what publishing needs (id, pool, priorities, queued_at): cheap by the
    thousand, where loading whole rows with their specs is not."""
    query = sa.select(Job.id, Job.pool, Job.priority, Job.effective_priority, Job.queued_at).where(*where)
    rows = session.execute(query.limit(limit) if limit else query).all()
    return [
        Job(
            id=r.id,
            pool=r.pool,
            priority=r.priority,
            effective_priority=r.effective_priority,
            queued_at=r.queued_at,
        )
        for r in rows
    ]


def _announce(job: Job, reason: str, settings: Settings) -> None:
    try:
        state_machine.announce(get_redis(), job, reason=reason, ttl_seconds=settings.events_ttl_seconds)
    except redis.RedisError as exc:
        log.warning("state event not published", job_id=job.id, error=f"{type(exc).__name__}: {exc}")


# ---------------------------------------------------------------- the loop


@dataclass
class Task:
    name: str
    interval: float
    run: Callable[[], object]
    next_at: float = 0.0


@dataclass
class Maintenance:
    """The leader's loop: each task at its own interval, every failure logged and retried next time."""

    settings: Settings
    celery: Celery | None = None
    lock: LeaderLock | None = None
    tasks: list[Task] = field(default_factory=list)
    leading: bool = False

    def __post_init__(self) -> None:
        s = self.settings
        self.lock = self.lock or LeaderLock(get_redis, s.beat_leader_ttl_seconds)
        self.tasks = [
            Task(
                "reaper",
                s.reaper_interval_seconds,
                lambda: (reap_dead_workers(s, celery=self.celery), prune_workers(s)),
            ),
            Task(
                "retries",
                s.retry_promote_interval_seconds,
                lambda: promote_due_retries(s, celery=self.celery),
            ),
            Task("reconciler", s.reconcile_interval_seconds, lambda: reconcile_broker(s, celery=self.celery)),
            Task("aging", s.aging_interval_seconds, lambda: age_waiting_jobs(s, celery=self.celery)),
            Task("queue metrics", s.queue_metrics_interval_seconds, lambda: measure_queues(s)),
            # Jobs held for a tenant's max_running_jobs whose release a worker did not get to write.
            Task("quotas", s.retry_promote_interval_seconds, lambda: quotas.sweep(s, celery=self.celery)),
            # Tenants below their fair share of a queue while jobs of theirs wait (cancels, lost releases).
            Task(
                "fair-share", s.retry_promote_interval_seconds, lambda: fairshare.sweep(s, celery=self.celery)
            ),
            # Dependants whose parents ended: released (queued) or canceled when they never can run.
            Task(
                "dependencies",
                s.retry_promote_interval_seconds,
                lambda: dependencies.sweep(s, celery=self.celery),
            ),
            # Overdue live jobs in a full pool take the slot of the lowest-priority running job (opt-in).
            Task("preemption", s.retry_promote_interval_seconds, lambda: preemption.preempt(s)),
            # Cron schedules: the leader alone fires them, each fire recorded once (workflows/schedules.py).
            Task("schedules", s.schedule_interval_seconds, lambda: schedules.fire_due(s, celery=self.celery)),
            # Files whose retention has passed, in bounded batches (lifecycle/retention.py).
            Task("retention", s.retention_interval_seconds, lambda: retention.sweep(s)),
            # Resumable uploads abandoned past their expiry: part files and rows, in bounded batches.
            Task("uploads", s.reaper_interval_seconds, lambda: expire_uploads(s)),
        ]

    def tick(self) -> None:
        """Renew leadership and run the tasks that are due."""
        assert self.lock is not None
        leading = self.lock.lead()
        if leading != self.leading:
            log.info("beat leadership " + ("acquired" if leading else "lost"), identity=self.lock.identity)
            self.leading = leading
        if not leading:
            metrics.QUEUES.clear()  # only the leader speaks for the queues
            return
        now = time.monotonic()
        for task in self.tasks:
            if now < task.next_at:
                continue
            task.next_at = now + task.interval
            try:
                task.run()
            except Exception as exc:  # the database or Redis is down: try again next interval
                log.warning("maintenance task failed", task=task.name, error=f"{type(exc).__name__}: {exc}")

    def run_forever(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                self.tick()
                stop.wait(TICK_SECONDS)
        finally:
            if self.lock is not None and self.leading:
                self.lock.release()


_stop = threading.Event()


def start_in_background(settings: Settings) -> threading.Thread:
    """Run the maintenance loop in a daemon thread of this process (the beat service)."""
    from framefleet.celery_app import app

    loop = Maintenance(settings, celery=app)
    thread = threading.Thread(
        target=loop.run_forever, args=(_stop,), name="framefleet-maintenance", daemon=True
    )
    thread.start()

    def _stop_and_release() -> None:
        _stop.set()
        thread.join(2.0)  # lets the loop give up leadership at once rather than after its TTL

    atexit.register(_stop_and_release)
    log.info("maintenance loop started", identity=loop.lock.identity if loop.lock else None)
    return thread

"""Split-and-stitch bookkeeping in the database: the chunk rows of an attempt, their claims, the join's
counter, progress summed over chunks, and the reaper's pass over lost chunks.

One job, one state: the job stays `running` (owned by its attempt number) while its chunks run; each
chunk and the join are rows of `job_chunks` keyed by (job, attempt, index), moved by compare-and-set
exactly as jobs are. The join row's `pending` counts the chunks not yet done. A chunk's completion and the
decrement are one transaction, and the decrement is one UPDATE on the join row (a row lock on
PostgreSQL, the write lock on SQLite), so exactly one chunk, the last, sees it reach zero and publishes
the join. A redelivered or reaped chunk that already finished cannot count twice: its own compare-and-set
(running → done for its delivery number) fails first.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.core.states import JobState
from framefleet.db.models import Job, JobChunk, utcnow
from framefleet.media.chunks import Chunk
from framefleet.observability import cost

ENCODE, JOIN = "encode", "join"
WAITING, QUEUED, RUNNING, DONE, STOPPED = "waiting", "queued", "running", "done", "stopped"
# Share of the job's progress bar taken by the join (concatenate, mux, verify, publish).
JOIN_SHARE = 0.05
# Deliveries of one chunk before the whole attempt is failed as worker_lost (a chunk that kills workers).
MAX_CHUNK_DELIVERIES = 3


@dataclass(frozen=True)
class Delivery:
    """A chunk (or the join) this delivery now owns."""

    job_id: str
    job_attempt: int
    index: int
    kind: str
    attempt: int
    chunk: Chunk


# For a delivery known only by its keys (the reaper's): its frame range is not needed to hand it back.
NO_CHUNK = Chunk(0, 0, 0, 0.0, 0.0)


def start(session: Session, *, job_id: str, job_attempt: int, chunks: list[Chunk]) -> None:
    """Write the attempt's chunk rows (queued) and its join row (waiting for all of them); earlier
    attempts' rows go."""
    session.execute(sa.delete(JobChunk).where(JobChunk.job_id == job_id, JobChunk.job_attempt != job_attempt))
    now = utcnow()
    rows = [
        JobChunk(
            job_id=job_id,
            job_attempt=job_attempt,
            index=c.index,
            kind=ENCODE,
            state=QUEUED,
            start_frame=c.start_frame,
            frames=c.frames,
            seek=c.seek,
            seconds=c.seconds,
            updated_at=now,
        )
        for c in chunks
    ]
    total = sum(c.frames for c in chunks)
    rows.append(
        JobChunk(
            job_id=job_id,
            job_attempt=job_attempt,
            index=len(chunks),
            kind=JOIN,
            state=WAITING,
            start_frame=0,
            frames=total,
            seek=0.0,
            seconds=sum(c.seconds for c in chunks),
            pending=len(chunks),
            updated_at=now,
        )
    )
    session.add_all(rows)


def claim(session: Session, *, job_id: str, job_attempt: int, index: int, worker: str) -> Delivery | None:
    """Compare-and-set queued → running for this delivery; None when the chunk is not this message's to run
    (done, running elsewhere, the job ended or moved to another attempt)."""
    owner = session.execute(
        sa.select(Job.id).where(
            Job.id == job_id, Job.attempt == job_attempt, Job.state == JobState.running.value
        )
    ).first()
    if owner is None:
        return None
    row = session.get(JobChunk, (job_id, job_attempt, index), populate_existing=True)
    if row is None or row.state != QUEUED:
        return None
    now = utcnow()
    # Read before the update: the ORM update writes the new values into `row` too.
    delivery = row.attempt + 1
    chunk = Chunk(index, row.start_frame, row.frames, row.seek, row.seconds)
    moved = session.execute(
        sa.update(JobChunk)
        .where(_key(job_id, job_attempt, index), JobChunk.state == QUEUED, JobChunk.attempt == row.attempt)
        .values(state=RUNNING, attempt=delivery, worker=worker, started_at=now, updated_at=now)
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return None
    return Delivery(job_id, job_attempt, index, row.kind, delivery, chunk)


def stage(session: Session, *, delivery: Delivery, uris: list[str]) -> bool:
    """Record where this chunk is about to stage its files, while it still runs for its job's running
    attempt; False when the attempt ended (then stage nothing). Recorded first, so that whoever ends the
    attempt finds everything it may have to remove (lifecycle/staging.py)."""
    moved = session.execute(
        sa.update(JobChunk)
        .where(
            _key(delivery.job_id, delivery.job_attempt, delivery.index),
            JobChunk.state == RUNNING,
            JobChunk.attempt == delivery.attempt,
            _running(delivery.job_id, delivery.job_attempt),
        )
        .values(details={"staging": uris}, updated_at=utcnow())
    )
    return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


def owns(session: Session, *, job_id: str, job_attempt: int) -> bool:
    """Whether the job is still running this attempt."""
    return session.scalar(sa.select(_running(job_id, job_attempt))) is True


def finish(session: Session, *, delivery: Delivery, details: dict[str, Any]) -> bool:
    """Record a chunk done; True when it was the last, so the join is now queued (publish it after commit).

    False also when this delivery no longer owned the chunk (it was reaped and run again).
    """
    moved = session.execute(
        sa.update(JobChunk)
        .where(
            _key(delivery.job_id, delivery.job_attempt, delivery.index),
            JobChunk.state == RUNNING,
            JobChunk.attempt == delivery.attempt,
        )
        .values(state=DONE, progress=100.0, details=details, updated_at=utcnow())
    )
    if moved.rowcount != 1:  # type: ignore[attr-defined]
        return False
    if delivery.kind == JOIN:
        return False
    # One statement on the join row: its lock orders concurrent finishers, so one of them sees zero.
    counted = session.execute(
        sa.update(JobChunk)
        .where(
            JobChunk.job_id == delivery.job_id,
            JobChunk.job_attempt == delivery.job_attempt,
            JobChunk.kind == JOIN,
            JobChunk.state == WAITING,
        )
        .values(
            pending=JobChunk.pending - 1,
            state=sa.case((JobChunk.pending == 1, QUEUED), else_=JobChunk.state),
            updated_at=utcnow(),
        )
        .returning(JobChunk.pending)
    ).first()
    return counted is not None and counted.pending == 0


def hand_back(session: Session, *, delivery: Delivery) -> bool:
    """Put a chunk this delivery runs back in the queue (its worker is shutting down or was lost)."""
    moved = session.execute(
        sa.update(JobChunk)
        .where(
            _key(delivery.job_id, delivery.job_attempt, delivery.index),
            JobChunk.state == RUNNING,
            JobChunk.attempt == delivery.attempt,
        )
        .values(state=QUEUED, worker=None, progress=0.0, updated_at=utcnow())
    )
    return bool(moved.rowcount == 1)  # type: ignore[attr-defined]


def stop(session: Session, *, delivery: Delivery) -> None:
    """A chunk whose run ended the job's attempt (canceled, failed): it runs no more."""
    session.execute(
        sa.update(JobChunk)
        .where(
            _key(delivery.job_id, delivery.job_attempt, delivery.index),
            JobChunk.state == RUNNING,
            JobChunk.attempt == delivery.attempt,
        )
        .values(state=STOPPED, updated_at=utcnow())
    )


def report(session: Session, *, delivery: Delivery, percent: float) -> float:
    """Record a chunk's progress; returns the job's, the chunks' sum weighted by frames (written too)."""
    session.execute(
        sa.update(JobChunk)
        .where(
            _key(delivery.job_id, delivery.job_attempt, delivery.index),
            JobChunk.attempt == delivery.attempt,
            JobChunk.state == RUNNING,
        )
        .values(progress=round(percent, 2), updated_at=utcnow())
    )
    rows = session.execute(
        sa.select(JobChunk.kind, JobChunk.frames, JobChunk.progress).where(
            JobChunk.job_id == delivery.job_id, JobChunk.job_attempt == delivery.job_attempt
        )
    ).all()
    overall = job_progress([(r.kind, r.frames, r.progress) for r in rows])
    session.execute(
        sa.update(Job)
        .where(Job.id == delivery.job_id, Job.attempt == delivery.job_attempt, Job.state == "running")
        .values(progress=overall)
    )
    return overall


def job_progress(rows: Iterable[tuple[str, int, float]]) -> float:
    """The job's percent from its chunks' (kind, frames, percent): encodes by frames, then the join."""
    encodes = [(frames, pct) for kind, frames, pct in rows if kind == ENCODE]
    joins = [pct for kind, _, pct in rows if kind == JOIN]
    total = sum(frames for frames, _ in encodes) or 1
    encoded = sum(frames * pct for frames, pct in encodes) / total
    joined = joins[0] if joins else 0.0
    return round(encoded * (1 - JOIN_SHARE) + joined * JOIN_SHARE, 2)


def add_usage(session: Session, *, job_id: str, used: dict[str, Any]) -> None:
    """Add what one task of a split attempt consumed to the job's usage (row locked: tasks end at once)."""
    job = session.get(Job, job_id, with_for_update=True, populate_existing=True)
    if job is not None:
        job.usage = cost.add_usage(job.usage, used)


def in_chunks(session: Session, jobs: Iterable[tuple[str, int]]) -> set[str]:
    """Of these running (job id, attempt) pairs, those whose attempt has been split into chunks."""
    pairs = list(jobs)
    if not pairs:
        return set()
    found = session.execute(
        sa.select(JobChunk.job_id, JobChunk.job_attempt).where(
            JobChunk.kind == JOIN, JobChunk.job_id.in_([job_id for job_id, _ in pairs])
        )
    ).all()
    wanted = set(pairs)
    return {r.job_id for r in found if (r.job_id, r.job_attempt) in wanted}


def queued_before(session: Session, cutoff: datetime) -> list[tuple[Job, int, list[int]]]:
    """Per running split job: its current attempt's chunks (and join) queued since before `cutoff`."""
    rows = session.execute(
        sa.select(Job, JobChunk.index)
        .join(Job, sa.and_(Job.id == JobChunk.job_id, Job.attempt == JobChunk.job_attempt))
        .where(Job.state == JobState.running.value, JobChunk.state == QUEUED, JobChunk.updated_at < cutoff)
        .order_by(JobChunk.job_id, JobChunk.index)
    ).all()
    grouped: dict[str, tuple[Job, int, list[int]]] = {}
    for job, index in rows:
        grouped.setdefault(job.id, (job, job.attempt, []))[2].append(index)
    return list(grouped.values())


@dataclass(frozen=True)
class RunningChunk:
    """A running chunk as the reaper judges it: shaped like a job for scheduling/maintenance._worker_gone."""

    id: str  # the job's id: a chunk's worker advertises the job it works for
    attempt: int  # the job's attempt
    index: int
    delivery: int
    kind: str
    worker: str | None
    started_at: datetime | None
    updated_at: datetime


def running(session: Session, job_ids: Iterable[str]) -> list[RunningChunk]:
    """The running chunks (and joins) of these jobs' current attempts."""
    ids = list(job_ids)
    if not ids:
        return []
    rows = session.execute(
        sa.select(JobChunk, Job.attempt)
        .join(Job, sa.and_(Job.id == JobChunk.job_id, Job.attempt == JobChunk.job_attempt))
        .where(JobChunk.job_id.in_(ids), JobChunk.state == RUNNING)
    ).all()
    return [
        RunningChunk(c.job_id, attempt, c.index, c.attempt, c.kind, c.worker, c.started_at, c.updated_at)
        for c, attempt in rows
    ]


def _running(job_id: str, job_attempt: int) -> Any:
    return (
        sa.select(Job.id)
        .where(Job.id == job_id, Job.attempt == job_attempt, Job.state == JobState.running.value)
        .exists()
    )


def _key(job_id: str, job_attempt: int, index: int) -> Any:
    return sa.and_(JobChunk.job_id == job_id, JobChunk.job_attempt == job_attempt, JobChunk.index == index)

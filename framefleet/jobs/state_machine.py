"""The one place job states change.

Each transition is a compare-and-set on the job row (`UPDATE ... WHERE state IN (allowed sources)`), so
two attempts can never both own a job, terminal states never change, and every change is recorded in
job_transitions (from, to, at, reason, worker, attempt) and announced on the job's event stream.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet import events
from framefleet.core.states import TERMINAL, JobState, TransitionError, sources_for
from framefleet.db.models import Job, JobTransition, utcnow


def transition(
    session: Session,
    job_id: str,
    target: JobState,
    *,
    reason: str,
    expect: Iterable[JobState] | None = None,
    worker: str | None = None,
    attempt: int | None = None,
    values: dict[str, Any] | None = None,
    actor: str | None = None,
) -> Job:
    """Move a job to `target` if it is in one of `expect` (default: any allowed source); flush, don't commit.

    `attempt`, when given, must match the row: a stale attempt cannot change a job it no longer owns.
    `actor` names the client that asked for the change (recorded in the history).
    """
    allowed = sources_for(target)
    sources = allowed if expect is None else allowed & frozenset(expect)
    now = utcnow()
    update: dict[str, Any] = {"state": target.value, "updated_at": now, **(values or {})}
    if target in TERMINAL:
        update.setdefault("finished_at", now)
        update.setdefault("retry_at", None)
    if target is JobState.queued:
        # Queue wait and aging count from here; a retry that is due is no longer pending.
        update.setdefault("queued_at", now)
        update.setdefault("retry_at", None)
    # UPDATE ... RETURNING (SQLite 3.35+, PostgreSQL) hands back the changed row with the compare-and-set
    # itself; without it the row is read again afterwards. Either way one statement per transition less
    # than reading it twice, which a short job paid on its claim and on its ending.
    returning = session.get_bind().dialect.update_returning
    job: Job | None = None
    for _ in range(5):
        current = session.execute(sa.select(Job.state, Job.attempt).where(Job.id == job_id)).one_or_none()
        if current is None:
            raise TransitionError(job_id, None, target, "no such job")
        state_now = JobState(current.state)
        if state_now not in sources:
            raise TransitionError(job_id, state_now, target, f"cannot move a {state_now} job to {target}")
        if attempt is not None and current.attempt != attempt:
            raise TransitionError(job_id, state_now, target, f"attempt {attempt} no longer owns the job")
        # Compare-and-set on the exact state read: a concurrent change makes this match no row.
        cas = (
            sa.update(Job)
            .where(Job.id == job_id, Job.state == current.state, Job.attempt == current.attempt)
            .values(**update)
        )
        if returning:
            job = session.scalars(
                cas.returning(Job), execution_options={"populate_existing": True}
            ).one_or_none()
            if job is not None:
                break
        elif session.execute(cas).rowcount == 1:  # type: ignore[attr-defined]
            break
    else:
        raise TransitionError(job_id, None, target, "job kept changing under us")
    recorded_attempt = update.get("attempt", attempt if attempt is not None else current.attempt)
    # A plain insert: the history row is never read back here, so it needs no unit-of-work flush.
    session.execute(
        sa.insert(JobTransition).values(
            job_id=job_id,
            from_state=current.state,
            to_state=target.value,
            at=now,
            reason=reason,
            worker=worker,
            attempt=recorded_attempt,
            actor=actor,
        )
    )
    if job is None:
        job = session.get(Job, job_id, populate_existing=True)
        assert job is not None
    return job


def announce(
    client: redis.Redis,
    job: Job,
    *,
    reason: str,
    ttl_seconds: int,
    before: list[tuple[str, dict[str, Any]]] | None = None,
    delete: tuple[str, ...] = (),
) -> None:
    """Publish the job's new state (after commit), and the final `done` event for a terminal state.

    `before`: events that go ahead of the state change (the outputs of a succeeded job); `delete`: keys to
    drop with it. All in one Redis round trip.
    """
    state = JobState(job.state)
    payload = {
        "state": state.value,
        "reason": reason,
        "attempt": job.attempt,
        "failure_class": job.failure_class,
        "error": job.error,
    }
    items = [*(before or []), ("state", payload)]
    if state in TERMINAL:
        items.append(("done", payload))
    events.publish_batch(
        client, job.id, items, ttl_seconds=ttl_seconds if state in TERMINAL else None, delete=delete
    )


def assert_owner(session: Session, job_id: str, attempt: int) -> None:
    """Raise TransitionError unless `attempt` still owns the running job (compare-and-set on the row).

    The check is an UPDATE, so the row stays locked until the caller's transaction ends: the reaper cannot
    take the job between this check and what the caller writes in the same transaction.
    """
    result = session.execute(
        sa.update(Job)
        .where(Job.id == job_id, Job.state == JobState.running.value, Job.attempt == attempt)
        .values(updated_at=utcnow())
    )
    if result.rowcount != 1:  # type: ignore[attr-defined]
        raise TransitionError(job_id, None, JobState.running, f"attempt {attempt} no longer owns the job")


def ensure_owner(job_id: str, attempt: int) -> None:
    """Before publishing outputs: stop (JobFailure worker_lost) if this attempt lost the job meanwhile."""
    from framefleet.config import get_settings
    from framefleet.core.failures import FailureClass, JobFailure
    from framefleet.db.outage import hold_through_outage
    from framefleet.db.session import session_scope

    def check() -> None:
        with session_scope() as session:
            assert_owner(session, job_id, attempt)

    try:
        # Reached with the outputs ready: a database outage now holds them rather than throwing them away.
        hold_through_outage(
            check,
            what=f"the ownership check of job {job_id} before publishing",
            hold_seconds=get_settings().db_outage_hold_seconds,
        )
    except TransitionError as exc:
        raise JobFailure(FailureClass.worker_lost, f"not publishing: {exc.reason}") from None

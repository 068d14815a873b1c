"""Job service: submit, read, list and cancel jobs for a tenant. The API routes only call these."""

from __future__ import annotations

import base64
import hashlib
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.core.spec import JobSpec, Priority
from framefleet.core.states import TERMINAL, JobState, TransitionError
from framefleet.db.models import Job, JobDependency, JobOutput, JobTransition, Workflow, utcnow
from framefleet.jobs import dispatch, state_machine
from framefleet.keys import Principal
from framefleet.logging import get_logger
from framefleet.queues import pool_for
from framefleet.scheduling import fairshare
from framefleet.workflows import dependencies

if TYPE_CHECKING:
    from celery import Celery

log = get_logger(__name__)

MAX_PAGE = 100
# Submissions insert through the tables: the ORM's unit of work costs more than the inserts themselves.
_JOBS = cast(sa.Table, Job.__table__)
_TRANSITIONS = cast(sa.Table, JobTransition.__table__)


class JobNotFound(Exception):
    pass


class IdempotencyConflict(Exception):
    pass


class JobFinished(Exception):
    def __init__(self, state: str) -> None:
        super().__init__(f"the job already ended ({state}); only a queued or running job can be canceled")
        self.state = state


class NotWaiting(Exception):
    def __init__(self, state: str) -> None:
        super().__init__(f"the job is {state}; only a queued or pending job can change its priority")
        self.state = state


class BadCursor(ValueError):
    pass


def cancel_key(job_id: str) -> str:
    """Redis key a worker polls to learn that its running job was canceled."""
    return f"framefleet:job:{job_id}:cancel"


def spec_hash(spec_document: dict[str, Any]) -> str:
    """Digest of a normalised spec: same meaning, same digest (key order does not matter)."""
    canonical = json.dumps(spec_document, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


def new_job_row(
    *,
    principal: Principal,
    spec: JobSpec,
    document: dict[str, Any],
    pool: str | None = None,
    idempotency_key: str | None = None,
    template: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """Every column of a new queued job, so that `Job(**row)` shows it without reading it back.

    `document` is `spec.model_dump(mode="json")` (serialising a spec is the costliest step of a submission,
    done once per request); `pool` is where admission routed the job (default: from the spec alone);
    `template` is the (name, version) of the template call it was made from.
    """
    now = utcnow()
    row: dict[str, Any] = {
        "id": str(uuid.uuid4()),
        "tenant_id": principal.tenant_id,
        "state": JobState.queued.value,
        "priority": spec.priority.value,
        "effective_priority": spec.priority.value,
        "hardware": spec.hardware.value,
        "pool": pool or pool_for(spec),
        "spec": document,
        "spec_hash": spec_hash(document),
        "idempotency_key": idempotency_key,
        "attempt": 0,
        "worker": None,
        "cancel_requested": False,
        "progress": 0.0,
        "failure_class": None,
        "error": None,
        "created_at": now,
        "updated_at": now,
        "queued_at": now,
        "started_at": None,
        "finished_at": None,
        "failures": 0,
        "retry_at": None,
        "max_run_seconds": spec.max_run_seconds,
        "run_limit_seconds": None,
        "avoid_workers": None,
        "usage": None,
        "pending_reason": None,
        "workflow_id": None,
        "workflow_step": None,
        "trace_context": None,
        "template_name": template[0] if template else None,
        "template_version": template[1] if template else None,
    }
    dependencies.pending_row(row, spec)
    return row


def insert_jobs(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    """Insert new jobs (rows from new_job_row) with their `submitted` transitions: two statements however
    many rows. The caller commits; a reused idempotency key raises IntegrityError."""
    session.execute(sa.insert(_JOBS), list(rows))
    links = dependencies.edges(rows)
    if links:
        session.execute(sa.insert(JobDependency), links)
    session.execute(
        sa.insert(_TRANSITIONS),
        [
            {
                "job_id": row["id"],
                "from_state": None,
                "to_state": row["state"],
                "at": row["created_at"],
                "reason": _submitted_reason(row),
                "worker": None,
                "attempt": 0,
            }
            for row in rows
        ],
    )


def _submitted_reason(row: dict[str, Any]) -> str:
    if row["state"] == JobState.queued.value:
        return "submitted"
    if row.get("pending_reason") == dependencies.DEPENDENCIES:
        return dependencies.submitted_reason(row)
    # A job beyond its tenant's fair share of the queue waits in the database (fairshare.py).
    return "submitted; waits for its tenant's turn in the queue (fair share)"


def find_replay(session: Session, *, principal: Principal, idempotency_key: str, digest: str) -> Job | None:
    """The job an earlier request with this Idempotency-Key created, if any.

    Raises IdempotencyConflict when that request had a different body (`digest` is its spec_hash).
    """
    existing = session.scalar(
        sa.select(Job).where(Job.tenant_id == principal.tenant_id, Job.idempotency_key == idempotency_key)
    )
    if existing is not None and existing.spec_hash != digest:
        raise IdempotencyConflict("this Idempotency-Key was already used with a different request body")
    return existing


def get_job(session: Session, *, principal: Principal, job_id: str) -> Job:
    """The tenant's job; another tenant's job is reported as missing."""
    job = session.get(Job, job_id) if _is_uuid(job_id) else None
    if job is None or job.tenant_id != principal.tenant_id:
        raise JobNotFound(job_id)
    return job


def _is_uuid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return True


@dataclass(frozen=True)
class JobFilter:
    state: JobState | None = None
    priority: Priority | None = None
    created_after: datetime | None = None
    created_before: datetime | None = None
    template: str | None = None


def encode_cursor(row: Job | Workflow) -> str:
    """A page cursor after `row` (a job, or a workflow run: both pages are newest first)."""
    raw = f"{row.created_at.isoformat()}|{row.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        stamp, job_id = raw.split("|", 1)
        created_at = datetime.fromisoformat(stamp)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadCursor("cursor is not one this API returned") from exc
    if created_at.tzinfo is None:
        # Every cursor this API hands out carries a UTC offset; a naive one was made by hand.
        raise BadCursor("cursor is not one this API returned")
    return created_at, job_id


def list_jobs(
    session: Session, *, principal: Principal, filters: JobFilter, limit: int = 50, cursor: str | None = None
) -> tuple[list[Job], str | None]:
    """The tenant's jobs, newest first, and the cursor of the next page (None on the last page)."""
    limit = max(1, min(limit, MAX_PAGE))
    query = sa.select(Job).where(Job.tenant_id == principal.tenant_id)
    if filters.state is not None:
        query = query.where(Job.state == filters.state.value)
    if filters.priority is not None:
        query = query.where(Job.priority == filters.priority.value)
    if filters.template is not None:
        query = query.where(Job.template_name == filters.template)
    if filters.created_after is not None:
        query = query.where(Job.created_at > filters.created_after)
    if filters.created_before is not None:
        query = query.where(Job.created_at < filters.created_before)
    if cursor:
        created_at, job_id = decode_cursor(cursor)
        query = query.where(
            sa.or_(Job.created_at < created_at, sa.and_(Job.created_at == created_at, Job.id < job_id))
        )
    rows = list(session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit + 1)))
    next_cursor = encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def cancel_job(
    session: Session,
    redis_client: redis.Redis,
    *,
    principal: Principal,
    job_id: str,
    events_ttl_seconds: int,
    reason: str = "canceled by client",
) -> Job:
    """Cancel a job: a waiting job is canceled at once; a running job's worker is told to kill ffmpeg.
    `reason` goes in a waiting job's history (a workflow's cancel says so)."""
    job = get_job(session, principal=principal, job_id=job_id)
    for _ in range(3):
        state = JobState(job.state)
        if state in TERMINAL:
            raise JobFinished(state.value)
        if state is JobState.running:
            session.execute(
                sa.update(Job)
                .where(Job.id == job.id)
                .values(cancel_requested=True, cancel_requested_by=principal.actor)
            )
            session.commit()
            redis_client.set(cancel_key(job.id), "1", ex=24 * 3600)
            session.refresh(job)
            return job
        try:
            job = state_machine.transition(
                session,
                job.id,
                JobState.canceled,
                reason=reason,
                values={"cancel_requested": True},
                actor=principal.actor,
            )
            # A queued job left its queue: its tenant's next job waiting for its fair share takes the place
            # now, in this transaction, rather than at the beat's next pass.
            successors = fairshare.release_next(session, job=job) if state is JobState.queued else []
        except TransitionError:
            session.rollback()
            job = get_job(session, principal=principal, job_id=job_id)
            continue
        session.commit()
        if successors:
            dispatch.dispatch_many(successors)
        try:
            state_machine.announce(redis_client, job, reason=reason, ttl_seconds=events_ttl_seconds)
        except redis.RedisError as exc:
            # The cancel is done (the database says so); only its event is missing, and a stream reader
            # makes the final `done` from the database row instead.
            log.warning("canceled job not announced", job_id=job.id, error=f"{type(exc).__name__}: {exc}")
        return job
    raise JobFinished(job.state)


def change_priority(
    session: Session, *, principal: Principal, job_id: str, priority: Priority, celery: Celery | None = None
) -> Job:
    """Queue hopping: give a waiting job a new priority. A queued job's message moves to the new queue
    (as aging moves it); a pending one is published there when released. NotWaiting once it runs or ended.

    Aging restarts from the change: the new priority is both the requested and the effective one.
    """
    job = get_job(session, principal=principal, job_id=job_id)
    state, old = job.state, job.effective_priority or job.priority
    waiting = (JobState.queued.value, JobState.pending.value)
    # Compare-and-set on the state and queue read: a claim or an aging move in between wins, and we retry.
    for _ in range(3):
        if state not in waiting:
            raise NotWaiting(state)
        changed = session.execute(
            sa.update(Job)
            .where(
                Job.id == job.id,
                Job.state == state,
                sa.func.coalesce(Job.effective_priority, Job.priority) == old,
            )
            .values(priority=priority.value, effective_priority=priority.value, updated_at=utcnow())
        ).rowcount  # type: ignore[attr-defined]
        session.commit()
        session.refresh(job)
        if changed == 1:
            break
        state, old = job.state, job.effective_priority or job.priority
    else:
        raise NotWaiting(job.state)
    if state == JobState.queued.value and old != priority.value:
        dispatch.move(job, old, celery=celery)
    log.info("job priority changed", job_id=job.id, was=old, now=priority.value, actor=principal.actor)
    return job


def outputs_of(session: Session, job_id: str) -> list[JobOutput]:
    return list(
        session.scalars(sa.select(JobOutput).where(JobOutput.job_id == job_id).order_by(JobOutput.id))
    )


def history_of(session: Session, job_id: str) -> list[JobTransition]:
    return list(
        session.scalars(
            sa.select(JobTransition).where(JobTransition.job_id == job_id).order_by(JobTransition.id)
        )
    )


def job_view(job: Job, outputs: list[JobOutput] | None = None) -> dict[str, Any]:
    """The public representation of a job."""
    view: dict[str, Any] = {
        "id": job.id,
        "state": job.state,
        "priority": job.priority,
        "hardware": job.hardware,
        "pool": job.pool,
        "attempt": job.attempt,
        "progress": round(job.progress, 2),
        "cancel_requested": job.cancel_requested,
        "failure_class": job.failure_class,
        "error": job.error,
        "created_at": job.created_at,
        "updated_at": job.updated_at,
        "started_at": job.started_at,
        "finished_at": job.finished_at,
        "effective_priority": job.effective_priority or job.priority,
        "failures": job.failures,
        "retry_at": job.retry_at,
        "max_run_seconds": job.max_run_seconds,
        "pending_reason": job.pending_reason,
        "usage": job.usage,
        "cost": (job.usage or {}).get("cost"),
        "legal_hold": bool(job.legal_hold),
        "expires_at": job.expires_at,
        "expired_at": job.expired_at,
        "cache_hit": job.cached_from is not None,
        "cached_from": job.cached_from,
        "input_fingerprint": job.input_fingerprint,
        "template": (
            {"name": job.template_name, "version": job.template_version} if job.template_name else None
        ),
        "spec": job.spec,
    }
    if outputs is not None:
        status = "expired" if job.expired_at is not None else "stored"
        view["outputs"] = [output_view(o, status=status) for o in outputs]
    return view


def output_view(output: JobOutput, *, status: str = "stored") -> dict[str, Any]:
    """The public representation of an output; `status` is `expired` once retention deleted its files."""
    return {
        "name": output.name,
        "uri": output.uri,
        "container": output.container,
        "size_bytes": output.size_bytes,
        "duration_seconds": output.duration_seconds,
        "bitrate_kbps": output.bitrate_kbps,
        "width": output.width,
        "height": output.height,
        "video_codec": output.video_codec,
        "audio_codec": output.audio_codec,
        "metrics": output.metrics,
        "metrics_log_uri": output.metrics_log_uri,
        **output.group_view(),
        "status": status,
    }

"""Quotas per tenant (its settings' `quotas`), each optional.

- `max_queued_jobs`, `media_minutes_per_month`, `output_bytes`: hard limits. A submission that finds the
  tenant's waiting jobs (pending, queued, retrying), this month's media minutes (tenancy/usage.py) or the
  bytes it stores now (lifecycle/ledger.py: added at publish, taken off when retention deletes) at the
  limit is refused, 429 `quota-exceeded`.
- `max_running_jobs`: never refuses. A worker that takes a job of a tenant already running its limit moves
  it `queued → pending` (reason `quota-running`); when one of the tenant's jobs stops running, the held
  jobs are queued again oldest first, as many as there are free slots. The beat does the same every few
  seconds, so a release missed by a killed worker is only late, never lost.

Usage is counted on the (tenant_id, state) index with a bound of limit + 1 rows, so a check costs at most
the quota in index entries, whatever the tenant's history.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.core.states import JobState, TransitionError
from framefleet.db.models import Job, Tenant
from framefleet.db.session import session_scope
from framefleet.jobs import state_machine
from framefleet.jobs.dispatch import dispatch_many
from framefleet.lifecycle import ledger
from framefleet.logging import get_logger
from framefleet.redis_client import get_redis
from framefleet.tenancy import usage

if TYPE_CHECKING:
    from celery import Celery

    from framefleet.config import Settings

log = get_logger(__name__)

QUOTA_RUNNING = "quota-running"
# Jobs of a tenant that count against max_queued_jobs: accepted and not yet running or ended.
WAITING = (JobState.pending, JobState.queued, JobState.retrying)


@dataclass(frozen=True)
class Quotas:
    max_queued_jobs: int | None = None
    max_running_jobs: int | None = None
    media_minutes_per_month: int | None = None
    output_bytes: int | None = None


def quotas_of(settings: Mapping[str, Any] | None) -> Quotas:
    """A tenant's quotas from its settings (`{"quotas": {"max_queued_jobs": 100, …}}`), each optional.

    ValueError naming the field when malformed: tenant create/update refuse such settings.
    """
    raw = (settings or {}).get("quotas")
    if raw is None:
        return Quotas()
    fields = ("max_queued_jobs", "max_running_jobs", "media_minutes_per_month", "output_bytes")
    if not isinstance(raw, Mapping) or not set(raw) <= set(fields):
        raise ValueError(f"settings.quotas may hold {', '.join(fields)}")
    for name, value in raw.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"settings.quotas.{name} must be a whole number of at least 0, or null")
    return Quotas(**raw)


def count_upto(session: Session, tenant_id: int, states: Sequence[JobState], bound: int) -> int:
    """How many of the tenant's jobs are in `states`, counted up to `bound` at most (index entries read)."""
    inner = (
        sa.select(sa.literal(1))
        .where(Job.tenant_id == tenant_id, Job.state.in_([s.value for s in states]))
        .limit(bound)
        .subquery()
    )
    return int(session.scalar(sa.select(sa.func.count()).select_from(inner)) or 0)


@dataclass(frozen=True)
class Over:
    """A hard quota a submission found spent."""

    quota: str
    usage: float
    limit: int


def submission_over(session: Session, *, tenant_id: int, quotas: Quotas, now: datetime) -> Over | None:
    """The first hard quota the tenant has spent (a new job would be refused); None when one more fits."""
    if quotas.max_queued_jobs is not None:
        waiting = count_upto(session, tenant_id, WAITING, quotas.max_queued_jobs + 1)
        if waiting >= quotas.max_queued_jobs:
            return Over("max_queued_jobs", waiting, quotas.max_queued_jobs)
    if quotas.media_minutes_per_month is not None:
        row = usage.month(session, tenant_id=tenant_id, period=usage.period_of(now))
        minutes = round((row.media_seconds if row else 0.0) / 60, 3)
        if minutes >= quotas.media_minutes_per_month:
            return Over("media_minutes_per_month", minutes, quotas.media_minutes_per_month)
    if quotas.output_bytes is not None:
        stored = ledger.stored_bytes(session, tenant_id=tenant_id)
        if stored >= quotas.output_bytes:
            return Over("output_bytes", stored, quotas.output_bytes)
    return None


def report(session: Session, *, tenant: Tenant, now: datetime) -> dict[str, Any]:
    """Usage against each quota now, and every month's usage (GET /v1/usage, `framefleet tenants usage`)."""
    limits = settings_quotas(tenant.settings)
    counts = dict(
        session.execute(
            sa.select(Job.state, sa.func.count())
            .where(Job.tenant_id == tenant.id, Job.state.in_([s.value for s in (*WAITING, JobState.running)]))
            .group_by(Job.state)
        ).all()
    )
    this_month = usage.month(session, tenant_id=tenant.id, period=usage.period_of(now))
    current = {
        "max_queued_jobs": sum(counts.get(s.value, 0) for s in WAITING),
        "max_running_jobs": counts.get(JobState.running.value, 0),
        "media_minutes_per_month": round((this_month.media_seconds if this_month else 0.0) / 60, 3),
        "output_bytes": ledger.stored_bytes(session, tenant_id=tenant.id),
    }
    return {
        "tenant": tenant.name,
        "period": usage.period_of(now),
        "quotas": {name: {"usage": value, "limit": getattr(limits, name)} for name, value in current.items()},
        "periods": usage.periods(session, tenant_id=tenant.id),
    }


def _lock_tenant(session: Session, tenant_id: int) -> None:
    # Claims and releases of one tenant take turns, so two workers cannot both see the last free slot. A
    # no-op UPDATE, not SELECT ... FOR UPDATE: it locks the row on PostgreSQL and, on SQLite (which ignores
    # FOR UPDATE and reads outside a transaction), opens the write transaction before the count is read.
    session.execute(sa.update(Tenant).where(Tenant.id == tenant_id).values(id=Tenant.id))


def hold_if_full(session: Session, *, job: Job, tenant: str, quotas: Quotas, worker: str) -> Job | None:
    """At claim: the job moved to `pending` (quota-running) when its tenant runs its limit; else None."""
    limit = quotas.max_running_jobs
    if limit is None:
        return None
    _lock_tenant(session, job.tenant_id)
    running = count_upto(session, job.tenant_id, [JobState.running], limit)
    if running < limit:
        return None
    return state_machine.transition(
        session,
        job.id,
        JobState.pending,
        reason=f"tenant {tenant!r} runs its limit of {limit} jobs; the job waits for a slot",
        expect=[JobState.queued],
        worker=worker,
        values={"pending_reason": QUOTA_RUNNING},
    )


def release_held(session: Session, *, tenant_id: int, quotas: Quotas) -> list[Job]:
    """Queue again the tenant's oldest jobs held for quota-running, one per free slot (flushed, not
    committed); the caller commits, then dispatches and announces them."""
    _lock_tenant(session, tenant_id)
    limit = quotas.max_running_jobs
    held = (
        sa.select(Job.id)
        .where(
            Job.tenant_id == tenant_id,
            Job.state == JobState.pending.value,
            Job.pending_reason == QUOTA_RUNNING,
        )
        .order_by(Job.created_at, Job.id)
    )
    if limit is not None:
        free = limit - count_upto(session, tenant_id, [JobState.running], limit)
        if free <= 0:
            return []
        held = held.limit(free)
    released = []
    for job_id in session.scalars(held).all():
        try:
            released.append(
                state_machine.transition(
                    session,
                    job_id,
                    JobState.queued,
                    reason="a running slot of its tenant came free",
                    expect=[JobState.pending],
                    values={"pending_reason": None},
                )
            )
        except TransitionError:
            continue  # canceled meanwhile
    return released


def tenants_holding(session: Session) -> list[tuple[int, Quotas]]:
    """Tenants with jobs held for quota-running, and their quotas (for the beat's sweep)."""
    rows = session.execute(
        sa.select(Tenant.id, Tenant.settings).where(
            sa.exists().where(
                Job.tenant_id == Tenant.id,
                Job.state == JobState.pending.value,
                Job.pending_reason == QUOTA_RUNNING,
            )
        )
    ).all()
    found = []
    for tenant_id, settings in rows:
        try:
            found.append((tenant_id, quotas_of(settings)))
        except ValueError:
            found.append((tenant_id, Quotas()))  # malformed: no limit, release everything held
    return found


def settings_quotas(settings: Mapping[str, Any] | None) -> Quotas:
    """quotas_of for stored settings: malformed ones (from before the check) mean no quota."""
    try:
        return quotas_of(settings)
    except ValueError:
        return Quotas()


def release_and_dispatch(*, tenant_id: int, settings: Settings, celery: Celery | None = None) -> int:
    """Queue, publish and announce the jobs of one tenant that a free running slot lets go; how many."""
    with session_scope(settings.database_url) as session:
        tenant_settings = session.scalar(sa.select(Tenant.settings).where(Tenant.id == tenant_id))
        limits = settings_quotas(tenant_settings)
        if limits.max_running_jobs is None:
            return 0  # nothing is held for a tenant without the quota (a removed one: the sweep's)
        released = release_held(session, tenant_id=tenant_id, quotas=limits)
    _publish(released, settings=settings, celery=celery)
    return len(released)


def sweep(settings: Settings, *, celery: Celery | None = None) -> int:
    """The beat's pass: release held jobs of every tenant with free slots (a worker's release may be lost)."""
    with session_scope(settings.database_url) as session:
        holding = tenants_holding(session)
    released = 0
    for tenant_id, quotas in holding:
        with session_scope(settings.database_url) as session:
            jobs = release_held(session, tenant_id=tenant_id, quotas=quotas)
        _publish(jobs, settings=settings, celery=celery)
        released += len(jobs)
    return released


def _publish(jobs: Sequence[Job], *, settings: Settings, celery: Celery | None) -> None:
    if not jobs:
        return
    # Committed as queued: a failed publish is repaired by the reconciler.
    dispatch_many(jobs, celery=celery)
    for job in jobs:
        try:
            state_machine.announce(
                get_redis(settings.redis_url),
                job,
                reason="a running slot of its tenant came free",
                ttl_seconds=settings.events_ttl_seconds,
            )
        except redis.RedisError as exc:
            log.warning("released job not announced", job_id=job.id, error=f"{type(exc).__name__}: {exc}")

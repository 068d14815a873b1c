"""Fair share between tenants inside one queue (pool and priority): a per-tenant cap on jobs in the broker.

A queue is first in, first out; a tenant that submits 10,000 batch jobs would put them all ahead of another
tenant's first one. So each tenant has at most `cap` jobs `queued` (published) per queue, where
cap = FRAMEFLEET_FAIR_SHARE_IN_FLIGHT * its weight (settings `fair_share.weight`, default 1). The rest wait in
the database, `pending` with reason `fair-share`. Each time a worker takes one of the tenant's jobs from that
queue, or a client cancels one of its queued jobs, the oldest of its waiting jobs there is queued and
published in its place (in that claim's or cancel's own transaction), so every tenant keeps up to its cap in
line and the line interleaves tenants: another tenant's first job waits behind at most the caps of the
others, not behind their backlog. The beat's sweep tops tenants up to their cap (after aging moved a job to
another queue, or a release a killed worker never wrote), and with fair share turned off it lets every
waiting job go. Priorities stay strict: the cap is per queue, and workers drain higher queues first as
before. docs/architecture.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.core.states import JobState, TransitionError
from framefleet.db.models import Job, Tenant
from framefleet.db.session import session_scope
from framefleet.jobs import state_machine
from framefleet.jobs.dispatch import dispatch_many, queue_priority

if TYPE_CHECKING:
    from celery import Celery

    from framefleet.config import Settings

FAIR_SHARE = "fair-share"


def weight_of(settings: Mapping[str, Any] | None) -> float:
    """A tenant's weight (settings `{"fair_share": {"weight": 2}}`); ValueError naming the field if bad."""
    raw = (settings or {}).get("fair_share")
    if raw is None:
        return 1.0
    if not isinstance(raw, Mapping) or set(raw) != {"weight"}:
        raise ValueError("settings.fair_share holds `weight` only")
    weight = raw["weight"]
    if isinstance(weight, bool) or not isinstance(weight, int | float) or not 0 < weight <= 1000:
        raise ValueError("settings.fair_share.weight must be a number above 0 (at most 1000)")
    return float(weight)


def cap_for(in_flight: int, settings: Mapping[str, Any] | None) -> int:
    """How many jobs of a tenant may be queued in one queue at once (stored settings: bad weight means 1)."""
    try:
        weight = weight_of(settings)
    except ValueError:
        weight = 1.0
    return max(1, round(in_flight * weight))


def _queued_in(session: Session, tenant_id: int, pool: str, priority: str, bound: int) -> int:
    # Bounded: the tenant has at most its cap queued per queue, so this reads few index entries.
    inner = (
        sa.select(sa.literal(1))
        .where(
            Job.tenant_id == tenant_id,
            Job.state == JobState.queued.value,
            Job.pool == pool,
            sa.func.coalesce(Job.effective_priority, Job.priority) == priority,
        )
        .limit(bound)
        .subquery()
    )
    return int(session.scalar(sa.select(sa.func.count()).select_from(inner)) or 0)


def assign(session: Session, rows: list[dict[str, Any]], *, in_flight: int) -> None:
    """Before new rows are inserted: those beyond their tenant's cap in their queue become `pending`
    (fair-share) instead of `queued`. `in_flight` 0 turns fair share off."""
    if in_flight <= 0 or not rows:
        return
    tenant_ids = {row["tenant_id"] for row in rows}
    caps = {
        tenant_id: cap_for(in_flight, settings)
        for tenant_id, settings in session.execute(
            sa.select(Tenant.id, Tenant.settings).where(Tenant.id.in_(tenant_ids))
        )
    }
    used: dict[tuple[int, str, str], int] = {}
    for row in rows:
        if row["state"] != JobState.queued.value:
            continue  # waits for something else first (its parents); judged when released
        slot = (row["tenant_id"], row["pool"], row["effective_priority"] or row["priority"])
        cap = caps.get(row["tenant_id"], in_flight)
        if slot not in used:
            used[slot] = _queued_in(session, *slot, bound=cap)
        if used[slot] < cap:
            used[slot] += 1
        else:
            row.update(state=JobState.pending.value, pending_reason=FAIR_SHARE, queued_at=None)


def _waiting(session: Session, tenant_id: int, pool: str, priority: str, count: int) -> list[str]:
    return list(
        session.scalars(
            sa.select(Job.id)
            .where(
                Job.tenant_id == tenant_id,
                Job.state == JobState.pending.value,
                Job.pending_reason == FAIR_SHARE,
                Job.pool == pool,
                sa.func.coalesce(Job.effective_priority, Job.priority) == priority,
            )
            .order_by(Job.created_at, Job.id)
            .limit(count)
        )
    )


def _release(session: Session, job_ids: Sequence[str]) -> list[Job]:
    released = []
    for job_id in job_ids:
        try:
            released.append(
                state_machine.transition(
                    session,
                    job_id,
                    JobState.queued,
                    reason="its tenant's turn in the queue (fair share)",
                    expect=[JobState.pending],
                    values={"pending_reason": None},
                )
            )
        except TransitionError:
            continue  # canceled meanwhile
    return released


def release_next(session: Session, *, job: Job) -> list[Job]:
    """At claim (in its transaction): `job` left its queue, so its tenant's oldest job waiting for that
    queue takes its place. The caller commits, then publishes what is returned."""
    return _release(session, _waiting(session, job.tenant_id, job.pool, queue_priority(job), 1))


# Jobs one pass releases per tenant and queue when fair share is off: leftovers of an earlier setting go in
# bounded steps, one pass a second.
RELEASE_ALL_STEP = 500


def sweep(settings: Settings, *, celery: Celery | None = None) -> int:
    """The beat's pass: top every tenant up to its cap in each queue where it has jobs waiting; with fair
    share off (0), release what still waits from when it was on (else those jobs would wait forever)."""
    with session_scope(settings.database_url) as session:
        slots = session.execute(
            sa.select(Job.tenant_id, Job.pool, sa.func.coalesce(Job.effective_priority, Job.priority))
            .where(Job.state == JobState.pending.value, Job.pending_reason == FAIR_SHARE)
            .distinct()
        ).all()
        tenant_ids = {tenant_id for tenant_id, _, _ in slots}
        caps = {
            tenant_id: cap_for(settings.fair_share_in_flight, tenant_settings)
            for tenant_id, tenant_settings in session.execute(
                sa.select(Tenant.id, Tenant.settings).where(Tenant.id.in_(tenant_ids))
            )
        }
    released_total = 0
    for tenant_id, pool, priority in slots:
        with session_scope(settings.database_url) as session:
            if settings.fair_share_in_flight <= 0:
                free = RELEASE_ALL_STEP
            else:
                cap = caps.get(tenant_id, settings.fair_share_in_flight)
                free = cap - _queued_in(session, tenant_id, pool, priority, cap)
            released = (
                _release(session, _waiting(session, tenant_id, pool, priority, free)) if free > 0 else []
            )
        if released:
            dispatch_many(released, celery=celery)
            released_total += len(released)
    return released_total

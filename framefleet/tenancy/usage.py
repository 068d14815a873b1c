"""What each tenant used, per calendar month (UTC): jobs succeeded, media minutes, output bytes.

Counted, not scanned: the worker adds a succeeded job's figures to its tenant's row for the month in the
transaction that records the success (one upsert), so quota checks and reports read a few rows. The
media minutes of a job are the duration of what it produced (its longest output: the renditions of one
input share it); its output bytes, the sizes of its outputs. `reconcile` recomputes the rows from the jobs
and outputs, for a database restored from elsewhere or counters in doubt.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from framefleet.core.states import JobState
from framefleet.db.models import Job, JobOutput, TenantUsage


def period_of(at: datetime) -> str:
    """The month `at` falls in (UTC), as "YYYY-MM"."""
    return f"{at.year:04d}-{at.month:02d}"


def media_seconds_of(outputs: Sequence[JobOutput]) -> float:
    return max((row.duration_seconds or 0.0 for row in outputs), default=0.0)


def record_success(session: Session, *, tenant_id: int, outputs: Sequence[JobOutput], at: datetime) -> None:
    """Add one succeeded job and its outputs to its tenant's month (in the caller's transaction)."""
    values = {
        "tenant_id": tenant_id,
        "period": period_of(at),
        "jobs_succeeded": 1,
        "media_seconds": media_seconds_of(outputs),
        "output_bytes": sum(row.size_bytes for row in outputs),
    }
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(TenantUsage).values(**values)
    added = {
        name: getattr(TenantUsage, name) + statement.excluded[name]
        for name in values
        if name not in ("tenant_id", "period")
    }
    session.execute(statement.on_conflict_do_update(index_elements=["tenant_id", "period"], set_=added))


def month(session: Session, *, tenant_id: int, period: str) -> TenantUsage | None:
    return session.get(TenantUsage, (tenant_id, period))


def periods(session: Session, *, tenant_id: int) -> list[dict[str, Any]]:
    """Every month the tenant used something, newest first."""
    rows = session.scalars(
        sa.select(TenantUsage).where(TenantUsage.tenant_id == tenant_id).order_by(TenantUsage.period.desc())
    )
    return [
        {
            "period": row.period,
            "jobs_succeeded": row.jobs_succeeded,
            "media_minutes": round(row.media_seconds / 60, 3),
            "output_bytes": row.output_bytes,
        }
        for row in rows
    ]


def reconcile(session: Session, *, tenant_id: int | None = None) -> int:
    """Recompute the usage rows (of one tenant, or all) from succeeded jobs and their outputs; flushed, not
    committed. Returns how many month rows now exist for them."""
    per_job = (
        sa.select(
            Job.tenant_id,
            Job.finished_at,
            sa.func.coalesce(sa.func.sum(JobOutput.size_bytes), 0),
            sa.func.coalesce(sa.func.max(JobOutput.duration_seconds), 0.0),
        )
        .join(JobOutput, JobOutput.job_id == Job.id, isouter=True)
        .where(Job.state == JobState.succeeded.value)
        .group_by(Job.id, Job.tenant_id, Job.finished_at)
    )
    if tenant_id is not None:
        per_job = per_job.where(Job.tenant_id == tenant_id)
    totals: dict[tuple[int, str], list[float]] = defaultdict(lambda: [0, 0.0, 0])
    for owner, finished_at, size, seconds in session.execute(per_job):
        if finished_at is None:
            continue
        total = totals[(owner, period_of(finished_at))]
        total[0] += 1
        total[1] += float(seconds or 0.0)
        total[2] += int(size)
    clear = sa.delete(TenantUsage)
    if tenant_id is not None:
        clear = clear.where(TenantUsage.tenant_id == tenant_id)
    session.execute(clear)
    session.add_all(
        TenantUsage(
            tenant_id=owner,
            period=period,
            jobs_succeeded=int(jobs),
            media_seconds=seconds,
            output_bytes=int(size),
        )
        for (owner, period), (jobs, seconds, size) in totals.items()
    )
    session.flush()
    return len(totals)

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


# Ended states: an attempt's machine time and energy are spent whether the job then succeeded or not.
_ENDED = (JobState.succeeded.value, JobState.failed.value, JobState.canceled.value)
MAX_DAYS = 92


def by_day(rows: Sequence[tuple[datetime, str, dict[str, Any] | None]]) -> list[dict[str, Any]]:
    """Per UTC day, newest first, from (finished_at, state, usage) of ended jobs: jobs ended and succeeded,
    CPU and GPU hours, energy (kWh) and cost. Costs in several currencies (the rates changed) are kept
    apart, one entry per currency in `cost`."""
    days: dict[str, dict[str, Any]] = {}
    for finished_at, state, record in rows:
        day = days.setdefault(
            finished_at.date().isoformat(),
            {
                "jobs": 0,
                "succeeded": 0,
                "cpu_seconds": 0.0,
                "gpu_seconds": 0.0,
                "joules": 0.0,
                "cost": defaultdict(float),
            },
        )
        day["jobs"] += 1
        day["succeeded"] += state == JobState.succeeded.value
        record = record or {}
        for name in ("cpu_seconds", "gpu_seconds", "joules"):
            day[name] += float(record.get(name) or 0.0)
        cost = record.get("cost") or {}
        if cost.get("currency"):
            day["cost"][cost["currency"]] += float(cost.get("amount") or 0.0)
    return [
        {
            "day": name,
            "jobs": day["jobs"],
            "succeeded": day["succeeded"],
            "cpu_hours": round(day["cpu_seconds"] / 3600, 6),
            "gpu_hours": round(day["gpu_seconds"] / 3600, 6),
            "kwh": round(day["joules"] / 3_600_000, 6),
            "cost": [{"currency": c, "amount": round(a, 6)} for c, a in sorted(day["cost"].items())],
        }
        for name, day in sorted(days.items(), reverse=True)
    ]


def daily(session: Session, *, tenant_id: int, since: datetime) -> list[dict[str, Any]]:
    """The tenant's usage and cost per day for jobs that ended since `since` (GET /v1/usage/days)."""
    rows = session.execute(
        sa.select(Job.finished_at, Job.state, Job.usage).where(
            Job.tenant_id == tenant_id, Job.state.in_(_ENDED), Job.finished_at >= since
        )
    ).all()
    return by_day([(at, state, record) for at, state, record in rows if at is not None])

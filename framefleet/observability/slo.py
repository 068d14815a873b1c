"""Service-level objectives: the share of each priority's jobs that start within their queue-wait threshold.

The job rows are the truth: the summary counts, per priority, the jobs claimed within the window (their last
claim, `started_at`) and how long each waited in its queue (`started_at - queued_at`, the same figure as
framefleet_job_queue_wait_seconds). The burn-rate alerts (config/alerts/framefleet.yml) watch the same
objective from the histogram, minute by minute.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.db.models import Job


@dataclass(frozen=True)
class Objective:
    """`target` of the jobs of `priority` must start within `threshold_seconds` of entering their queue."""

    priority: str
    threshold_seconds: float
    target: float


def summarise(objective: Objective, *, jobs: int, within: int, p99_seconds: float | None) -> dict[str, Any]:
    """One objective's standing (pure). The error budget is the share of jobs allowed to wait longer
    (1 - target); `error_budget_remaining` is the part of it not yet spent (negative once overspent)."""
    attained = within / jobs if jobs else None
    budget = 1.0 - objective.target
    remaining = None if attained is None else 1.0 - (1.0 - attained) / budget
    return {
        "objective": "queue_wait",
        "priority": objective.priority,
        "threshold_seconds": objective.threshold_seconds,
        "target": objective.target,
        "jobs": jobs,
        "within_threshold": within,
        "attained": None if attained is None else round(attained, 6),
        "p99_wait_seconds": None if p99_seconds is None else round(p99_seconds, 3),
        "error_budget_remaining": None if remaining is None else round(remaining, 6),
        "met": None if attained is None else attained >= objective.target,
    }


def _wait_seconds(dialect: str) -> sa.ColumnElement[Any]:
    """`started_at - queued_at` in seconds, in the database's own date arithmetic."""
    if dialect == "postgresql":
        return sa.func.extract("epoch", Job.started_at - Job.queued_at)
    return (sa.func.julianday(Job.started_at) - sa.func.julianday(Job.queued_at)) * 86400.0


def standing(session: Session, *, objectives: list[Objective], since: datetime) -> list[dict[str, Any]]:
    """Each objective's standing over the jobs claimed since `since` (two queries per objective)."""
    wait = _wait_seconds(session.get_bind().dialect.name)
    found = []
    for objective in objectives:
        claimed = sa.and_(
            Job.priority == objective.priority,
            Job.started_at >= since,
            Job.queued_at.is_not(None),
        )
        jobs, within = session.execute(
            sa.select(
                sa.func.count(),
                sa.func.count().filter(wait <= objective.threshold_seconds),
            ).where(claimed)
        ).one()
        p99 = None
        if jobs:
            # The nearest-rank 99th percentile: the wait that 99 % of the jobs did not exceed.
            rank = math.ceil(0.99 * jobs)
            found_wait = session.scalar(
                sa.select(wait).where(claimed).order_by(wait).offset(rank - 1).limit(1)
            )
            # PostgreSQL's EXTRACT answers a numeric (Decimal).
            p99 = None if found_wait is None else float(found_wait)
        found.append(summarise(objective, jobs=jobs, within=within, p99_seconds=p99))
    return found

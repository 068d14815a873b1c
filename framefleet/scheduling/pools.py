"""Each pool's capacity and backlog, and how many workers it needs to meet the queue-wait target.

The estimate (docs/scaling.md) is queueing arithmetic on what the database saw over the recent window:

    needed = ceil(S * (λ + B / W))

S: mean run time of the pool's jobs that ended in the window (seconds), λ: jobs submitted to the pool per
second over the window, B: jobs waiting now (queued, or held for their tenant's fair share), W: the target
queue wait (FRAMEFLEET_POOL_QUEUE_WAIT_TARGET_SECONDS). λ·S workers keep up with arrivals; B·S/W more clear
today's backlog within the target. One worker is one job slot (a pool process).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.config import Settings
from framefleet.core.spec import PRIORITY_ORDER
from framefleet.core.states import JobState
from framefleet.db.models import Job, Worker, utcnow
from framefleet.queues import POOLS
from framefleet.scheduling import control
from framefleet.scheduling.fairshare import FAIR_SHARE
from framefleet.scheduling.registry import is_live

# Jobs read per pool to estimate the run time: enough for a stable mean, bounded for a busy window.
RUN_TIME_SAMPLE = 2000


def workers_needed(
    *, backlog: int, arrivals_per_second: float, mean_run_seconds: float | None, target_wait_seconds: float
) -> int | None:
    """ceil(S * (λ + B / W)); None when no job ended in the window to measure S while there is work."""
    if mean_run_seconds is None:
        return 0 if backlog == 0 and arrivals_per_second == 0 else None
    return math.ceil(mean_run_seconds * (arrivals_per_second + backlog / target_wait_seconds))


def _backlog(session: Session) -> dict[str, dict[str, int]]:
    priority = sa.func.coalesce(Job.effective_priority, Job.priority)
    waiting = sa.or_(
        Job.state == JobState.queued.value,
        sa.and_(Job.state == JobState.pending.value, Job.pending_reason == FAIR_SHARE),
    )
    counts: dict[str, dict[str, int]] = {pool: dict.fromkeys(PRIORITY_ORDER, 0) for pool in POOLS}
    for pool, prio, count in session.execute(
        sa.select(Job.pool, priority, sa.func.count()).where(waiting).group_by(Job.pool, priority)
    ):
        if pool in counts and prio in counts[pool]:
            counts[pool][prio] = int(count)
    return counts


def pools_view(session: Session, settings: Settings, *, now: datetime | None = None) -> list[dict[str, Any]]:
    """Per pool: workers alive, busy and held; backlog per priority; drain rate; workers needed."""
    now = now or utcnow()
    window = settings.pool_rate_window_seconds
    since = now - timedelta(seconds=window)
    backlog = _backlog(session)
    held = control.holds(session)
    recent = session.scalars(
        sa.select(Worker).where(
            Worker.last_heartbeat >= now - timedelta(seconds=settings.heartbeat_ttl_seconds)
        )
    ).all()
    arrivals = dict(
        session.execute(
            sa.select(Job.pool, sa.func.count()).where(Job.created_at >= since).group_by(Job.pool)
        ).all()
    )
    views = []
    for pool in POOLS:
        live = [row for row in recent if row.pool == pool and is_live(row, settings, now)]
        ended = session.execute(
            sa.select(Job.started_at, Job.finished_at)
            .where(Job.pool == pool, Job.finished_at >= since, Job.started_at.is_not(None))
            .order_by(Job.finished_at.desc())
            .limit(RUN_TIME_SAMPLE)
        ).all()
        runs = [(finished - started).total_seconds() for started, finished in ended if finished and started]
        mean_run = sum(runs) / len(runs) if runs else None
        waiting = sum(backlog[pool].values())
        arrival_rate = int(arrivals.get(pool, 0)) / window
        views.append(
            {
                "pool": pool,
                "workers": {
                    "alive": len(live),
                    "busy": sum(1 for row in live if row.current_job is not None),
                    "held": sum(1 for row in live if row.node in held),
                },
                "backlog": {"total": waiting, "by_priority": backlog[pool]},
                "window_seconds": window,
                # Jobs that ended in the window (capped at the sample size on a very busy pool).
                "drain_rate_per_minute": round(len(runs) * 60 / window, 2),
                "arrival_rate_per_minute": round(arrival_rate * 60, 2),
                "mean_run_seconds": None if mean_run is None else round(mean_run, 3),
                "queue_wait_target_seconds": settings.pool_queue_wait_target_seconds,
                "workers_needed": workers_needed(
                    backlog=waiting,
                    arrivals_per_second=arrival_rate,
                    mean_run_seconds=mean_run,
                    target_wait_seconds=settings.pool_queue_wait_target_seconds,
                ),
            }
        )
    return views

"""The worker registry: which workers exist, what they proved they can do, and which are alive.

Read from the `workers` table the heartbeats keep current. A worker is *live* while its last heartbeat
is younger than `heartbeat_ttl_seconds` and it has not stopped; it is *known* (its pool counts when
admission decides what can ever run) while it was seen within `workers_known_seconds`.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.config import Settings
from framefleet.core.retry import RetryPolicy, policy_for
from framefleet.db.models import Worker, utcnow
from framefleet.jobs.admission import WorkerView, can_run_on

MAX_WORKERS_READ = 2000


def is_live(row: Worker, settings: Settings, now: datetime) -> bool:
    """Whether a worker row has a current heartbeat."""
    return row.stopped_at is None and row.last_heartbeat >= now - timedelta(
        seconds=settings.heartbeat_ttl_seconds
    )


def known_workers(session: Session, settings: Settings, now: datetime | None = None) -> list[WorkerView]:
    """The latest advertisement of every node seen within workers_known_seconds, with liveness.

    Pool processes of one node share a node name and capabilities; a live one wins over a dead one.
    """
    now = now or utcnow()
    since = now - timedelta(seconds=settings.workers_known_seconds)
    rows = session.scalars(
        sa.select(Worker)
        .where(Worker.last_heartbeat >= since)
        .order_by(Worker.last_heartbeat.desc())
        .limit(MAX_WORKERS_READ)
    ).all()
    views: list[WorkerView] = []
    seen_nodes: set[tuple[str, str]] = set()
    for row in rows:
        live = is_live(row, settings, now)
        if not live and (row.node, row.pool) in seen_nodes:
            continue
        seen_nodes.add((row.node, row.pool))
        views.append(WorkerView.from_capabilities(row.id, row.pool, live, row.capabilities or {}))
    return views


def idle_slots(
    session: Session,
    settings: Settings,
    *,
    pool: str,
    exclude: str | None = None,
    now: datetime | None = None,
) -> int:
    """Live pool processes of `pool` running no job (as their rows last said), `exclude` left out."""
    now = now or utcnow()
    rows = session.scalars(
        sa.select(Worker)
        .where(
            Worker.pool == pool,
            Worker.current_job.is_(None),
            Worker.stopped_at.is_(None),
            Worker.last_heartbeat >= now - timedelta(seconds=settings.heartbeat_ttl_seconds),
        )
        .limit(MAX_WORKERS_READ)
    ).all()
    return sum(1 for row in rows if row.id != exclude)


def live_gpu_workers_for(
    session: Session, settings: Settings, spec: Mapping[str, Any], now: datetime | None = None
) -> list[str]:
    """Ids of live GPU workers that could run this spec."""
    return [
        w.id
        for w in known_workers(session, settings, now)
        if w.pool == "gpu" and w.live and can_run_on(w, spec, "gpu")
    ]


def cpu_can_run(session: Session, settings: Settings, spec: Mapping[str, Any]) -> bool:
    """Whether any known CPU worker could run this spec."""
    return any(w.pool == "cpu" and can_run_on(w, spec, "cpu") for w in known_workers(session, settings))


def retry_policy(settings: Settings, priority: str) -> RetryPolicy:
    """The retry policy of a priority from the settings."""
    default = RetryPolicy(
        settings.retry_base_seconds, settings.retry_cap_seconds, settings.retry_max_attempts
    )
    overrides = {
        str(name): {str(k): v for k, v in fields.items()} for name, fields in settings.retry_overrides.items()
    }
    return policy_for(priority, default=default, overrides=overrides)


class WorkerCache:
    """known_workers() remembered for a few seconds per API process (admission runs on every submission)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self._lock = threading.Lock()
        self._at = -1e18
        self._views: list[WorkerView] = []

    def fresh(self) -> list[WorkerView] | None:
        """The remembered workers while still fresh, else None (without touching the database)."""
        with self._lock:
            return self._views if time.monotonic() - self._at < self.seconds else None

    def get(self, session: Session, settings: Settings) -> list[WorkerView]:
        """Fresh workers, read again from the database when the remembered ones are too old."""
        remembered = self.fresh()
        if remembered is not None:
            return remembered
        now = time.monotonic()
        views = known_workers(session, settings)
        with self._lock:
            self._views, self._at = views, now
        return views

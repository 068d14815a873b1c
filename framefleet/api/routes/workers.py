"""Worker and queue routes: who is running, what each can do, and how much work waits in each queue."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import redis
import sqlalchemy as sa
from fastapi import APIRouter, Query
from starlette.responses import Response

from framefleet.api.deps import RedisDep, SessionDep, SettingsDep, requires
from framefleet.api.errors import Problem
from framefleet.api.responses import json_response
from framefleet.api.schemas import ProblemView
from framefleet.core.spec import PRIORITY_ORDER
from framefleet.core.states import JobState
from framefleet.db.models import Job, Worker, utcnow
from framefleet.keys import Principal
from framefleet.queues import POOLS, queue_name
from framefleet.scheduling import broker
from framefleet.scheduling.registry import is_live

router = APIRouter(prefix="/v1", tags=["workers"])

_AUTH: dict[int | str, dict[str, Any]] = {
    401: {"model": ProblemView, "description": "Missing or unknown API key"},
    403: {"model": ProblemView, "description": "Only operators and admins may see workers and queues"},
}
DEFAULT_WINDOW_SECONDS = 24 * 3600


def worker_status(row: Worker, alive: bool) -> str:
    """alive | stopped (exited) | lost (stopped heartbeating without exiting cleanly)."""
    if alive:
        return "alive"
    return "stopped" if row.stopped_at is not None else "lost"


@router.get("/workers", responses=_AUTH, summary="List workers")
def list_workers(
    session: SessionDep,
    _principal: Annotated[Principal, requires("workers:read")],
    settings: SettingsDep,
    seen_within: Annotated[
        int, Query(ge=1, le=30 * 24 * 3600, description="seconds; workers last seen longer ago are left out")
    ] = DEFAULT_WINDOW_SECONDS,
) -> Response:
    """Workers seen recently, alive first: pool, proven capabilities, current job and last heartbeat."""
    now = utcnow()
    rows = session.scalars(
        sa.select(Worker)
        .where(Worker.last_heartbeat >= now - timedelta(seconds=seen_within))
        .order_by(Worker.last_heartbeat.desc())
        .limit(1000)
    ).all()
    items = []
    for row in rows:
        alive = is_live(row, settings, now)
        items.append(
            {
                "id": row.id,
                "node": row.node,
                "host": row.host,
                "pid": row.pid,
                "pool": row.pool,
                "status": worker_status(row, alive),
                # Operators and admins may read any tenant's jobs, so the ids are shown.
                "current_job": row.current_job if alive else None,
                "current_attempt": row.current_attempt if alive else None,
                "busy": alive and row.current_job is not None,
                "jobs_done": row.jobs_done,
                "started_at": row.started_at,
                "last_heartbeat": row.last_heartbeat,
                "stopped_at": row.stopped_at,
                "capabilities": row.capabilities,
            }
        )
    items.sort(key=lambda item: (item["status"] != "alive", item["pool"], item["id"]))
    return json_response({"items": items})


@router.get("/queues", responses=_AUTH, summary="Queue depths")
def list_queues(
    session: SessionDep, _principal: Annotated[Principal, requires("queues:read")], redis_client: RedisDep
) -> Response:
    """Each queue's depth in the broker, and the jobs the database holds queued for it (all tenants)."""
    counts = session.execute(
        sa.select(Job.pool, sa.func.coalesce(Job.effective_priority, Job.priority), sa.func.count())
        .where(Job.state == JobState.queued.value)
        .group_by(Job.pool, sa.func.coalesce(Job.effective_priority, Job.priority))
    ).all()
    queued = {queue_name(pool, priority): int(n) for pool, priority, n in counts}
    waiting = dict(
        session.execute(
            sa.select(Job.state, sa.func.count())
            .where(Job.state.in_([JobState.retrying.value, JobState.running.value]))
            .group_by(Job.state)
        ).all()
    )
    names = [queue_name(pool, priority) for pool in POOLS for priority in PRIORITY_ORDER]
    try:
        depths = broker.depths(redis_client, names)
    except redis.RedisError as exc:
        raise Problem("unavailable", f"the broker cannot be reached: {type(exc).__name__}") from exc
    items = [
        {
            "name": name,
            "pool": name.split(".")[0],
            "priority": name.split(".")[1],
            "depth": depths[name],
            "queued_jobs": queued.get(name, 0),
        }
        for name in names
    ]
    return json_response(
        {
            "items": items,
            "retrying_jobs": int(waiting.get("retrying", 0)),
            "running_jobs": int(waiting.get("running", 0)),
        }
    )

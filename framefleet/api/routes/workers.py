"""Worker, queue and pool routes: who is running, what each can do, how much work waits in each queue, and
the operators' cordon, drain and uncordon of worker nodes (scheduling/control.py)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

import redis
import sqlalchemy as sa
from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from framefleet.api.deps import RedisDep, SessionDep, SettingsDep, requires
from framefleet.api.errors import Problem
from framefleet.api.responses import json_response
from framefleet.api.routes.tenancy import actor_of
from framefleet.api.schemas import ProblemView
from framefleet.core.spec import PRIORITY_ORDER
from framefleet.core.states import JobState
from framefleet.db.models import Job, Worker, utcnow
from framefleet.keys import Principal
from framefleet.observability import failures
from framefleet.queues import POOLS, queue_name
from framefleet.scheduling import broker, control, pools
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
    held = control.holds(session)
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
                # An operator's hold on its node: cordoned | draining | null (POST …/cordon, …/drain).
                "hold": held.get(row.node),
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


class HoldBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(default=None, max_length=500, description="why, shown in GET /v1/workers/…")


_HOLD_RESPONSES: dict[int | str, dict[str, Any]] = {
    **_AUTH,
    404: {"model": ProblemView, "description": "No worker or node of that name was ever seen"},
    422: {"model": ProblemView, "description": "Invalid body; `errors` names each field"},
}
Manager = Annotated[Principal, requires("workers:manage")]


def _hold(
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Principal,
    worker_id: str,
    hold: control.Hold | None,
    body: HoldBody | None,
) -> Response:
    try:
        node = control.set_hold(
            session,
            worker=worker_id,
            hold=hold,
            actor=actor_of(request, principal),
            reason=body.reason if body else None,
        )
    except control.UnknownWorker as exc:
        raise Problem("not-found", str(exc)) from exc
    session.commit()
    return json_response(control.node_view(session, settings, node=node))


@router.post("/workers/{worker_id}/cordon", responses=_HOLD_RESPONSES, summary="Cordon a worker node")
def cordon_worker(
    worker_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Manager,
    body: HoldBody | None = None,
) -> Response:
    """The worker's node takes no new job (within FRAMEFLEET_WORKER_CONTROL_POLL_SECONDS); running jobs
    go on. Held across the node's restarts until uncordoned. `worker_id` is a worker id or a node name."""
    return _hold(request, session, settings, principal, worker_id, control.CORDONED, body)


@router.post("/workers/{worker_id}/drain", responses=_HOLD_RESPONSES, summary="Drain a worker node")
def drain_worker(
    worker_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Manager,
    body: HoldBody | None = None,
) -> Response:
    """Cordon, and follow the running jobs to their end: `state` is `draining`, then `drained` once the
    node runs nothing (it may then be stopped without handing a job back)."""
    return _hold(request, session, settings, principal, worker_id, control.DRAINING, body)


@router.post("/workers/{worker_id}/uncordon", responses=_HOLD_RESPONSES, summary="Uncordon a worker node")
def uncordon_worker(
    worker_id: str,
    request: Request,
    session: SessionDep,
    settings: SettingsDep,
    principal: Manager,
    body: HoldBody | None = None,
) -> Response:
    """Lift a cordon or drain: the node consumes its pool's queues again."""
    return _hold(request, session, settings, principal, worker_id, None, body)


@router.get("/workers/{worker_id}", responses=_HOLD_RESPONSES, summary="A worker node's hold and jobs")
def get_worker_node(
    worker_id: str,
    session: SessionDep,
    settings: SettingsDep,
    _principal: Annotated[Principal, requires("workers:read")],
) -> Response:
    """The node of a worker id (or a node name): its hold (`active`, `cordoned`, `draining`, `drained`),
    live pool processes and the jobs they run."""
    try:
        node = control.node_of(session, worker=worker_id)
    except control.UnknownWorker as exc:
        raise Problem("not-found", str(exc)) from exc
    return json_response(control.node_view(session, settings, node=node))


@router.get("/pools", responses=_AUTH, summary="Pool capacity, backlog and scale hints")
def list_pools(
    session: SessionDep, settings: SettingsDep, _principal: Annotated[Principal, requires("workers:read")]
) -> Response:
    """Per pool: workers alive, busy and held, backlog per priority, recent drain and arrival rates, and
    the workers needed to meet FRAMEFLEET_POOL_QUEUE_WAIT_TARGET_SECONDS (docs/scaling.md)."""
    return json_response({"items": pools.pools_view(session, settings)})


@router.get("/failures", responses=_AUTH, summary="Recent failures by class")
def recent_failures(
    session: SessionDep,
    _principal: Annotated[Principal, requires("workers:read")],
    hours: Annotated[int, Query(ge=1, le=24 * 30, description="the window, back from now")] = 24,
) -> Response:
    """Jobs of every tenant that ended `failed` in the window: a count per failure class (most first) and
    the latest failures with the start of their error."""
    since = utcnow() - timedelta(hours=hours)
    return json_response({"window_seconds": hours * 3600, **failures.by_class(session, since=since)})

"""Operators' hold on worker nodes: cordon (take no new job), drain (the same, until its running jobs end),
uncordon. The database records it (`worker_controls`, one row per node); the node's consumer polls its row
and stops or resumes consuming its pool's queues (worker/control.py), and a claim on a held node passes the
job on (worker/tasks.py), so a message the node had already taken still runs elsewhere.

Consumption is per node (one Celery worker, several pool processes), so a hold names a node. An operator
may give a worker id from GET /v1/workers (`<node>:<pid>`) or the node name itself.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.config import Settings
from framefleet.db.models import Worker, WorkerControl, utcnow
from framefleet.scheduling.registry import is_live
from framefleet.tenancy import audit

Hold = Literal["cordoned", "draining"]
CORDONED: Hold = "cordoned"
DRAINING: Hold = "draining"


class UnknownWorker(LookupError):
    """No worker process or node of that name was ever seen."""


def node_of(session: Session, *, worker: str) -> str:
    """The node a worker id (`<node>:<pid>`) or node name stands for; UnknownWorker if none was seen."""
    row = session.get(Worker, worker)
    if row is not None:
        return row.node
    if session.scalar(sa.select(Worker.node).where(Worker.node == worker).limit(1)) is not None:
        return worker
    raise UnknownWorker(f"no worker {worker!r}")


def hold_of(session: Session, *, node: str) -> str | None:
    """`cordoned`, `draining`, or None when the node may take jobs (a primary-key read)."""
    return session.scalar(sa.select(WorkerControl.state).where(WorkerControl.node == node))


def set_hold(
    session: Session, *, worker: str, hold: Hold | None, actor: audit.Actor, reason: str | None = None
) -> str:
    """Cordon, drain (`hold`) or uncordon (None) the node of `worker`, audited in the same transaction;
    the node. The caller commits."""
    node = node_of(session, worker=worker)
    row = session.get(WorkerControl, node)
    if hold is None:
        if row is not None:
            session.delete(row)
    elif row is None:
        session.add(WorkerControl(node=node, state=hold, reason=reason or "", actor=actor.actor, at=utcnow()))
    else:
        row.state, row.reason, row.actor, row.at = hold, reason or "", actor.actor, utcnow()
    action = {CORDONED: "worker.cordon", DRAINING: "worker.drain", None: "worker.uncordon"}[hold]
    audit.record(
        session, actor, action=action, target=f"worker:{node}", details={"reason": reason} if reason else None
    )
    return node


def node_view(
    session: Session, settings: Settings, *, node: str, now: datetime | None = None
) -> dict[str, Any]:
    """A node's hold and its live pool processes: `state` is active | cordoned | draining | drained (a
    draining node none of whose live processes runs a job)."""
    now = now or utcnow()
    control = session.get(WorkerControl, node)
    rows = session.scalars(sa.select(Worker).where(Worker.node == node)).all()
    live = [row for row in rows if is_live(row, settings, now)]
    busy = [row.current_job for row in live if row.current_job is not None]
    state = control.state if control is not None else "active"
    if state == DRAINING and not busy:
        state = "drained"
    return {
        "node": node,
        "state": state,
        "reason": control.reason or None if control is not None else None,
        "by": control.actor if control is not None else None,
        "since": control.at if control is not None else None,
        "workers": sorted(row.id for row in live),
        "running_jobs": sorted(busy),
    }


def holds(session: Session) -> dict[str, str]:
    """Every held node and its hold (few rows: operators hold nodes one by one)."""
    return {
        node: state for node, state in session.execute(sa.select(WorkerControl.node, WorkerControl.state))
    }

"""Workflow runs: a named DAG of steps submitted as one unit, each step a job.

A run adds no machinery of its own to how steps wait and start: each step is a job whose `depends_on`
names the other steps' jobs, so the dependency sweep (workflows/dependencies.py) releases it, resolves its
input from a parent's output, or cancels it when a parent ended otherwise, exactly as for jobs submitted
one by one. The run row holds the name and the step order; its status is derived from its jobs' states.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.core.states import TERMINAL, JobState
from framefleet.db.models import Job, Workflow, utcnow
from framefleet.jobs import service
from framefleet.keys import Principal
from framefleet.workflows import dag

MAX_PAGE = 100
CANCEL_REASON = "workflow canceled"


class WorkflowNotFound(Exception):
    pass


class WorkflowFinished(Exception):
    def __init__(self, status: str) -> None:
        super().__init__(f"the workflow already ended ({status})")
        self.status = status


def plan(*, steps: Sequence[tuple[str, Mapping[str, Any]]]) -> list[dag.Planned]:
    """Each step with a fresh job id and its spec's step references turned into those ids (StepError)."""
    ids = {name: str(uuid.uuid4()) for name, _ in steps}
    return dag.plan(steps, ids)


def new_row(*, principal: Principal, name: str, steps: Sequence[str]) -> dict[str, Any]:
    """Every column of a new run."""
    return {
        "id": str(uuid.uuid4()),
        "tenant_id": principal.tenant_id,
        "name": name,
        "steps": list(steps),
        "created_by": principal.actor,
        "created_at": utcnow(),
    }


def attach(job_row: dict[str, Any], *, run: Mapping[str, Any], step: dag.Planned) -> None:
    """Make a new job row (service.new_job_row) the given step of the run."""
    job_row.update(id=step.job_id, workflow_id=run["id"], workflow_step=step.name)


def insert(session: Session, run: Mapping[str, Any]) -> None:
    """Insert the run row (in the transaction that inserts its jobs)."""
    session.execute(sa.insert(Workflow), [dict(run)])


def get_run(session: Session, *, principal: Principal, workflow_id: str) -> Workflow:
    """The tenant's run; another tenant's is reported as missing."""
    run = session.get(Workflow, workflow_id)
    if run is None or run.tenant_id != principal.tenant_id:
        raise WorkflowNotFound(workflow_id)
    return run


def jobs_of(session: Session, workflow_ids: Sequence[str]) -> dict[str, list[Job]]:
    """The jobs of each run, keyed by run id."""
    found: dict[str, list[Job]] = {workflow_id: [] for workflow_id in workflow_ids}
    if workflow_ids:
        for job in session.scalars(sa.select(Job).where(Job.workflow_id.in_(list(workflow_ids)))):
            found[job.workflow_id or ""].append(job)
    return found


def list_runs(
    session: Session, *, principal: Principal, limit: int = 50, cursor: str | None = None
) -> tuple[list[Workflow], str | None]:
    """The tenant's runs, newest first, and the cursor of the next page (None on the last page)."""
    limit = max(1, min(limit, MAX_PAGE))
    query = sa.select(Workflow).where(Workflow.tenant_id == principal.tenant_id)
    if cursor:
        created_at, run_id = service.decode_cursor(cursor)
        query = query.where(
            sa.or_(
                Workflow.created_at < created_at,
                sa.and_(Workflow.created_at == created_at, Workflow.id < run_id),
            )
        )
    rows = list(
        session.scalars(query.order_by(Workflow.created_at.desc(), Workflow.id.desc()).limit(limit + 1))
    )
    next_cursor = service.encode_cursor(rows[limit - 1]) if len(rows) > limit else None
    return rows[:limit], next_cursor


def cancel_run(
    session: Session,
    redis_client: redis.Redis,
    *,
    principal: Principal,
    workflow_id: str,
    events_ttl_seconds: int,
) -> tuple[Workflow, list[Job]]:
    """Cancel every step that has not ended: waiting ones at once, running ones through their worker (the
    cancel path of a lone job). WorkflowFinished when every step had already ended."""
    run = get_run(session, principal=principal, workflow_id=workflow_id)
    steps = jobs_of(session, [run.id])[run.id]
    if all(JobState(job.state) in TERMINAL for job in steps):
        raise WorkflowFinished(dag.status(job.state for job in steps))
    for job in steps:
        if JobState(job.state) in TERMINAL:
            continue
        try:
            service.cancel_job(
                session,
                redis_client,
                principal=principal,
                job_id=job.id,
                events_ttl_seconds=events_ttl_seconds,
                reason=CANCEL_REASON,
            )
        except service.JobFinished:
            continue  # ended meanwhile (the dependency sweep cancels dependants of a canceled parent)
    session.expire_all()
    return run, jobs_of(session, [run.id])[run.id]


def run_view(run: Workflow, steps: Sequence[Job]) -> dict[str, Any]:
    """The public representation of a run: its derived status and each step's job, in submission order."""
    by_step = {job.workflow_step: job for job in steps}
    ordered = [by_step[name] for name in run.steps if name in by_step]
    return {
        "id": run.id,
        "name": run.name,
        "status": dag.status(job.state for job in ordered),
        "created_at": run.created_at,
        "created_by": run.created_by,
        "location": f"/v1/workflows/{run.id}",
        "steps": [
            {
                "name": job.workflow_step,
                "job_id": job.id,
                "state": job.state,
                "pending_reason": job.pending_reason,
                "progress": round(job.progress, 2),
                "error": job.error,
                "started_at": job.started_at,
                "finished_at": job.finished_at,
                "location": f"/v1/jobs/{job.id}",
            }
            for job in ordered
        ],
    }

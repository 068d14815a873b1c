"""Job dependencies: a job that names parents in `depends_on` waits in `pending` until they end.

Each parent's final state is judged against the dependant's condition (`succeeded`, `failed`,
`finished`): once every parent ended as required the job is released (its input reference resolved to the
parent's output URI, queued through the state machine and published); once one parent ended otherwise the
job can never run and is canceled with the reason `parent failed`, which in turn ends its own dependants.
The beat leader's sweep does this for every waiting dependant, so nothing depends on the ending path of a
worker (a killed worker, a cancel through the API, the reaper all end parents their own way).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.core.spec import Condition, JobSpec
from framefleet.core.states import TERMINAL, JobState, TransitionError
from framefleet.db.models import Job, JobDependency, JobOutput
from framefleet.db.session import session_scope
from framefleet.jobs import state_machine
from framefleet.jobs.dispatch import dispatch
from framefleet.logging import get_logger

if TYPE_CHECKING:
    from celery import Celery

    from framefleet.config import Settings

log = get_logger(__name__)

# Job.pending_reason of a job waiting for its parents.
DEPENDENCIES = "dependencies"
# Dependants judged per sweep pass; a chain ends one generation per pass, passes repeat while any changed.
BATCH = 500
MAX_PASSES = 8


class UnknownParent(Exception):
    """A `depends_on` entry names no job of the tenant (`index` is its position)."""

    def __init__(self, index: int, job_id: str) -> None:
        super().__init__(f"no job {job_id} of this tenant")
        self.index = index
        self.field = f"depends_on.{index}"


# ---------------------------------------------------------------- pure


@dataclass(frozen=True)
class Verdict:
    """wait | release | doom, with the reason recorded in the job's history."""

    action: str
    reason: str


def holds(condition: Condition | str, state: JobState | str) -> bool:
    """Whether a parent that ended in `state` satisfies `condition`."""
    state = JobState(state)
    if Condition(condition) is Condition.finished:
        return state in TERMINAL
    return state.value == Condition(condition).value


def verdict(needs: Sequence[tuple[str, str]], states: Mapping[str, str]) -> Verdict:
    """Judge a dependant from its (parent, condition) pairs and the parents' current states."""
    waiting = []
    for parent, condition in needs:
        state = JobState(states.get(parent, JobState.canceled))  # a deleted parent never ends as needed
        if state not in TERMINAL:
            waiting.append(parent)
        elif not holds(condition, state):
            return Verdict("doom", f"parent failed: {parent} ended {state.value}, needed {condition}")
    if waiting:
        return Verdict("wait", "waits for parents " + ", ".join(waiting))
    return Verdict("release", "parents ended as required: " + ", ".join(p for p, _ in needs))


# ---------------------------------------------------------------- submission


def pending_row(row: dict[str, Any], spec: JobSpec) -> None:
    """Make a new job row (service.new_job_row) of a spec with parents wait for them."""
    if spec.depends_on:
        row.update(state=JobState.pending.value, pending_reason=DEPENDENCIES, queued_at=None)


def edges(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, str]]:
    """The job_dependencies rows of new job rows (their specs' depends_on)."""
    return [
        {"job_id": row["id"], "parent_id": parent["job"], "condition": parent.get("condition", "succeeded")}
        for row in rows
        for parent in row["spec"].get("depends_on") or ()
    ]


def submitted_reason(row: Mapping[str, Any]) -> str:
    """The history reason of a new job waiting for its parents."""
    parents = ", ".join(parent["job"] for parent in row["spec"].get("depends_on") or ())
    return f"submitted; waits for parents {parents}"


def check_parents(session: Session, *, tenant_id: int, spec: JobSpec, siblings: Collection[str] = ()) -> None:
    """Raise UnknownParent for the first parent that is not a job of the tenant.

    Parents are existing jobs, so a submission can never close a cycle: a job cannot name one that does
    not exist yet. The one exception is `siblings`, the jobs of the same workflow run, inserted with this
    one; the run's graph was checked for cycles before (workflows/dag.py).
    """
    if not spec.depends_on:
        return
    wanted = [parent.job for parent in spec.depends_on]
    found = set(siblings)
    outside = [job_id for job_id in wanted if job_id not in found]
    if outside:
        found |= set(
            session.scalars(sa.select(Job.id).where(Job.id.in_(outside), Job.tenant_id == tenant_id))
        )
    for index, job_id in enumerate(wanted):
        if job_id not in found:
            raise UnknownParent(index, job_id)


# ---------------------------------------------------------------- the sweep


def sweep(settings: Settings, *, celery: Celery | None = None) -> dict[str, int]:
    """Release or end every waiting dependant whose parents decided its fate; counts of each."""
    counts = {"released": 0, "canceled": 0}
    for _ in range(MAX_PASSES):
        changed = _one_pass(settings, celery, counts)
        if not changed:
            break
    return counts


def _one_pass(settings: Settings, celery: Celery | None, counts: dict[str, int]) -> int:
    with session_scope() as session:
        waiting = list(
            session.scalars(
                sa.select(Job.id)
                .where(Job.state == JobState.pending.value, Job.pending_reason == DEPENDENCIES)
                .order_by(Job.created_at)
                .limit(BATCH)
            )
        )
        if not waiting:
            return 0
        links = session.execute(
            sa.select(JobDependency.job_id, JobDependency.parent_id, JobDependency.condition).where(
                JobDependency.job_id.in_(waiting)
            )
        ).all()
        parents = {link.parent_id for link in links}
        states: dict[str, str] = {
            row.id: row.state
            for row in session.execute(sa.select(Job.id, Job.state).where(Job.id.in_(parents)))
        }
    needs: dict[str, list[tuple[str, str]]] = {job_id: [] for job_id in waiting}
    for link in links:
        needs[link.job_id].append((link.parent_id, link.condition))
    changed = 0
    for job_id, pairs in needs.items():
        judged = verdict(pairs, states)
        reason = judged.reason if judged.action == "doom" else None
        if judged.action == "release":
            outcome = _release(job_id, judged, settings, celery)
            if outcome is True:
                counts["released"] += 1
                changed += 1
            elif isinstance(outcome, str):
                reason = outcome
        if reason is not None and _end(job_id, reason, settings):
            counts["canceled"] += 1
            changed += 1
    return changed


def _release(job_id: str, judged: Verdict, settings: Settings, celery: Celery | None) -> bool | str:
    """Queue a job whose parents ended as required: True once queued, False when it no longer waits, or
    the reason it can never run (the parent has no output of the name its input refers to)."""
    try:
        with session_scope() as session:
            job = session.get(Job, job_id)
            if job is None or job.state != JobState.pending.value:
                return False
            document = dict(job.spec)
            ref = document.get("input")
            if isinstance(ref, dict):
                uri = session.scalar(
                    sa.select(JobOutput.uri).where(
                        JobOutput.job_id == ref["from"], JobOutput.name == ref["output"]
                    )
                )
                if uri is None:
                    return f"parent failed: {ref['from']} has no output {ref['output']!r}"
                document["input"] = uri
            job = state_machine.transition(
                session,
                job_id,
                JobState.queued,
                reason=judged.reason,
                expect=[JobState.pending],
                values={"pending_reason": None, "spec": document},
            )
    except TransitionError:
        return False  # canceled meanwhile
    dispatch(job, celery=celery)
    _announce(job, judged.reason, settings)
    return True


def _end(job_id: str, reason: str, settings: Settings) -> bool:
    try:
        with session_scope() as session:
            job = state_machine.transition(
                session,
                job_id,
                JobState.canceled,
                reason=reason,
                expect=[JobState.pending],
                values={"pending_reason": None, "error": reason},
            )
    except TransitionError:
        return False
    _announce(job, reason, settings)
    return True


def _announce(job: Job, reason: str, settings: Settings) -> None:
    from framefleet.redis_client import get_redis

    try:
        state_machine.announce(get_redis(), job, reason=reason, ttl_seconds=settings.events_ttl_seconds)
    except Exception as exc:  # the change is committed; only its event is missing
        log.warning("state event not published", job_id=job.id, error=f"{type(exc).__name__}: {exc}")

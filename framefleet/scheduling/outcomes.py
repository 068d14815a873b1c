"""Recording a failed attempt: the path the worker (its own failures) and the reaper (dead workers) share."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.orm import Session

from framefleet.config import Settings
from framefleet.core.failures import FailureClass
from framefleet.core.states import JobState, TransitionError
from framefleet.db.models import Job, utcnow
from framefleet.jobs import state_machine
from framefleet.scheduling import registry
from framefleet.scheduling.retries import plan_failure


def fail_attempt(
    session: Session,
    job_id: str,
    failure_class: FailureClass,
    message: str,
    *,
    worker: str | None,
    attempt: int,
    settings: Settings,
    values: dict[str, Any] | None = None,
    now: datetime | None = None,
) -> Job:
    """Move a running job whose attempt failed to retrying, failed or canceled; flush, don't commit.

    Raises TransitionError when `attempt` no longer owns the job (someone else recorded its end first).
    """
    job = session.get(Job, job_id, populate_existing=True)
    if job is None:
        raise TransitionError(job_id, None, JobState.failed, "no such job")
    spec = job.spec or {}
    fallback_cpu = str(spec.get("fallback") or "none") == "cpu"
    other_gpu: list[str] = []
    cpu_ok = False
    if failure_class is FailureClass.hardware_unavailable and job.pool == "gpu":
        other_gpu = [w for w in registry.live_gpu_workers_for(session, settings, spec) if w != worker]
        cpu_ok = fallback_cpu and registry.cpu_can_run(session, settings, spec)
    plan = plan_failure(
        failure_class,
        message,
        failures=job.failures + 1,
        pool=job.pool,
        policy=registry.retry_policy(settings, job.priority),
        worker=worker,
        cancel_requested=job.cancel_requested,
        fallback_cpu=fallback_cpu,
        avoid_workers=job.avoid_workers or [],
        other_gpu_workers=other_gpu,
        cpu_can_run=cpu_ok,
    )
    canceled = plan.target is JobState.canceled
    update: dict[str, Any] = {
        **(values or {}),
        "failures": job.failures + (0 if canceled else 1),
        "failure_class": FailureClass.canceled.value if canceled else failure_class.value,
        "error": None if canceled else message[:2000],
    }
    if plan.avoid_workers:
        update["avoid_workers"] = list(plan.avoid_workers)
    if plan.pool is not None:
        update["pool"] = plan.pool
    if plan.target is JobState.retrying:
        update["retry_at"] = (now or utcnow()) + timedelta(seconds=plan.delay_seconds)
    return state_machine.transition(
        session,
        job_id,
        plan.target,
        reason=plan.reason,
        expect=[JobState.running],
        worker=worker,
        attempt=attempt,
        values=update,
    )

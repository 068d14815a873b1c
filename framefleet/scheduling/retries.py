"""What happens to a job after a failed attempt (pure): retry, fall back to CPU, fail, or end canceled.

Used by the worker when an attempt fails and by the reaper when a worker died (worker_lost), so a job
follows the same rules whoever notices the failure.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass

from framefleet.core.failures import FailureClass
from framefleet.core.retry import RetryPolicy, decide
from framefleet.core.states import JobState


@dataclass(frozen=True)
class FailurePlan:
    target: JobState
    reason: str
    delay_seconds: float = 0.0
    pool: str | None = None  # set when the job moves to another pool (GPU -> CPU fallback)
    avoid_workers: tuple[str, ...] = ()


def plan_failure(
    failure_class: FailureClass,
    message: str,
    *,
    failures: int,
    pool: str,
    policy: RetryPolicy,
    worker: str | None = None,
    cancel_requested: bool = False,
    fallback_cpu: bool = False,
    avoid_workers: Sequence[str] = (),
    other_gpu_workers: Sequence[str] = (),
    cpu_can_run: bool = False,
    rng: random.Random | None = None,
) -> FailurePlan:
    """Decide the job's next state; `failures` counts failed attempts including this one.

    `other_gpu_workers` are live GPU workers able to run the job, other than the one that failed.
    """
    avoid = tuple(avoid_workers)
    if cancel_requested:
        return FailurePlan(JobState.canceled, "canceled by client", avoid_workers=avoid)
    if failure_class is FailureClass.hardware_unavailable and pool == "gpu":
        if worker and worker not in avoid:
            avoid = (*avoid, worker)
        others = [w for w in other_gpu_workers if w not in avoid]
        if others and failures < policy.max_attempts:
            decision = decide(failure_class, failures=failures, policy=policy, rng=rng)
            return FailurePlan(
                JobState.retrying,
                f"{message}; retrying on another GPU worker ({decision.reason})",
                decision.delay_seconds,
                avoid_workers=avoid,
            )
        if fallback_cpu and cpu_can_run:
            # A different route, not another try of the same one: allowed even after the last GPU attempt.
            return FailurePlan(
                JobState.retrying,
                f"{message}; no other GPU worker can run it, falling back to CPU",
                0.0,
                pool="cpu",
                avoid_workers=avoid,
            )
    decision = decide(failure_class, failures=failures, policy=policy, rng=rng)
    if decision.retry:
        return FailurePlan(
            JobState.retrying, f"{message} ({decision.reason})", decision.delay_seconds, avoid_workers=avoid
        )
    return FailurePlan(
        JobState.failed,
        message if "not retryable" in decision.reason else f"{message} ({decision.reason})",
        avoid_workers=avoid,
    )

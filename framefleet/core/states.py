"""Job states and the transitions allowed between them (pure; the database edge is jobs/state_machine.py)."""

from __future__ import annotations

from enum import StrEnum


class JobState(StrEnum):
    pending = "pending"  # waiting for dependencies, a quota slot or a schedule
    queued = "queued"
    running = "running"
    retrying = "retrying"  # waiting out a backoff before the next attempt
    succeeded = "succeeded"
    failed = "failed"
    canceled = "canceled"


TERMINAL: frozenset[JobState] = frozenset({JobState.succeeded, JobState.failed, JobState.canceled})

ALLOWED: dict[JobState, frozenset[JobState]] = {
    JobState.pending: frozenset({JobState.queued, JobState.canceled, JobState.failed}),
    # queued → pending: held at claim (its tenant is suspended) until released.
    JobState.queued: frozenset({JobState.running, JobState.pending, JobState.canceled, JobState.failed}),
    JobState.running: frozenset(
        {JobState.succeeded, JobState.failed, JobState.canceled, JobState.retrying, JobState.queued}
    ),
    JobState.retrying: frozenset({JobState.queued, JobState.canceled, JobState.failed}),
    JobState.succeeded: frozenset(),
    JobState.failed: frozenset(),
    JobState.canceled: frozenset(),
}


class TransitionError(Exception):
    """A transition the state machine does not allow, or one that lost a race."""

    def __init__(self, job_id: str, current: JobState | None, target: JobState, reason: str) -> None:
        super().__init__(reason)
        self.job_id = job_id
        self.current = current
        self.target = target
        self.reason = reason


def can_transition(current: JobState, target: JobState) -> bool:
    return target in ALLOWED[current]


def sources_for(target: JobState) -> frozenset[JobState]:
    """Every state from which `target` may be entered."""
    return frozenset(state for state, targets in ALLOWED.items() if target in targets)

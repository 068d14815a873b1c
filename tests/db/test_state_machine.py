"""The state machine against the real database: compare-and-set ownership and recorded history."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from framefleet.core.states import JobState, TransitionError
from framefleet.db.session import session_scope
from framefleet.jobs import state_machine
from framefleet.jobs.service import history_of
from tests.factories import queued_job


def new_job(key: str) -> str:
    return queued_job(key, {"input": "file:///x.mp4", "outputs": [{"container": "mp4"}]})


def claim(job_id: str, worker: str) -> bool:
    try:
        with session_scope() as session:
            state_machine.transition(
                session,
                job_id,
                JobState.running,
                reason="claim",
                expect=[JobState.queued],
                worker=worker,
                values={"attempt": 1, "worker": worker},
            )
        return True
    except TransitionError:
        return False


def test_only_one_claim_wins(tenant_key: tuple[str, str]) -> None:
    job_id = new_job(tenant_key[1])
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda i: claim(job_id, f"w{i}"), range(8)))
    assert results.count(True) == 1


def test_history_is_recorded_and_terminal_is_final(tenant_key: tuple[str, str]) -> None:
    job_id = new_job(tenant_key[1])
    assert claim(job_id, "w1")
    with session_scope() as session:
        state_machine.transition(session, job_id, JobState.succeeded, reason="done", attempt=1, worker="w1")
    with session_scope() as session, pytest.raises(TransitionError):
        state_machine.transition(session, job_id, JobState.canceled, reason="too late")
    with session_scope() as session:
        history = history_of(session, job_id)
    assert [(h.from_state, h.to_state) for h in history] == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ]
    assert history[1].worker == "w1" and history[1].attempt == 1 and history[2].reason == "done"


def test_stale_attempt_cannot_change_the_job(tenant_key: tuple[str, str]) -> None:
    job_id = new_job(tenant_key[1])
    assert claim(job_id, "w1")
    with session_scope() as session, pytest.raises(TransitionError, match="no longer owns"):
        state_machine.transition(session, job_id, JobState.failed, reason="late", attempt=2)


def test_unknown_job() -> None:
    with session_scope() as session, pytest.raises(TransitionError, match="no such job"):
        state_machine.transition(
            session, "00000000-0000-0000-0000-000000000000", JobState.running, reason="x"
        )

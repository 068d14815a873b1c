"""Pure rules: allowed state transitions and queue routing."""

from __future__ import annotations

import pytest

from framefleet.core.spec import JobSpec
from framefleet.core.states import ALLOWED, TERMINAL, JobState, can_transition, sources_for
from framefleet.queues import ALL_QUEUES, pool_for, queue_name, queues_for_pool


def test_terminal_states_never_change() -> None:
    for state in TERMINAL:
        assert ALLOWED[state] == frozenset()
        for target in JobState:
            assert not can_transition(state, target)


@pytest.mark.parametrize(
    ("current", "target", "ok"),
    [
        (JobState.queued, JobState.running, True),
        (JobState.queued, JobState.succeeded, False),
        (JobState.running, JobState.succeeded, True),
        (JobState.running, JobState.retrying, True),
        (JobState.retrying, JobState.queued, True),
        (JobState.pending, JobState.queued, True),
        (JobState.pending, JobState.running, False),
    ],
)
def test_transitions(current: JobState, target: JobState, ok: bool) -> None:
    assert can_transition(current, target) is ok


def test_sources_for() -> None:
    assert sources_for(JobState.running) == {JobState.queued}
    assert JobState.running in sources_for(JobState.canceled)


def test_queue_layout() -> None:
    assert [q.name for q in queues_for_pool("cpu")] == [
        "cpu.live",
        "cpu.high",
        "cpu.normal",
        "cpu.low",
        "cpu.batch",
    ]
    assert {q.routing_key for q in queues_for_pool("gpu")} == {"gpu"}
    assert len({q.name for q in ALL_QUEUES}) == 10
    assert queue_name("gpu", "live") == "gpu.live"


def test_pool_routing() -> None:
    base = {"input": "file:///x.mp4", "outputs": [{"container": "mp4"}]}
    assert pool_for(JobSpec.model_validate(base)) == "cpu"
    assert pool_for(JobSpec.model_validate({**base, "hardware": "cpu"})) == "cpu"
    assert pool_for(JobSpec.model_validate({**base, "hardware": "gpu"})) == "gpu"

"""Preemption's pure parts: which running jobs make room for overdue live jobs, and how a worker tells the
beat's stop of its attempt from a client's cancel."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from framefleet.scheduling.preemption import Running, choose_victims, marker, preempted_reason, stops

T0 = datetime(2026, 12, 1, tzinfo=UTC)


def running(job_id: str, priority: str, started: int, *, stopping: bool = False) -> Running:
    return Running(job_id, 1, priority, T0 + timedelta(seconds=started), stopping)


def test_the_lowest_priority_newest_job_makes_room_and_live_jobs_never_do() -> None:
    jobs = [
        running("old-batch", "batch", 0),
        running("new-batch", "batch", 50),
        running("normal", "normal", 60),
        running("live", "live", 70),
    ]
    assert [v.job_id for v in choose_victims(waiting_live=1, idle_slots=0, running=jobs)] == ["new-batch"]
    assert [v.job_id for v in choose_victims(waiting_live=3, idle_slots=0, running=jobs)] == [
        "new-batch",
        "old-batch",
        "normal",
    ]
    assert len(choose_victims(waiting_live=9, idle_slots=0, running=jobs)) == 3


def test_idle_slots_and_stops_under_way_are_not_doubled() -> None:
    jobs = [running("a", "batch", 0, stopping=True), running("b", "low", 10)]
    assert choose_victims(waiting_live=1, idle_slots=1, running=jobs) == []
    assert [v.job_id for v in choose_victims(waiting_live=1, idle_slots=0, running=jobs)] == ["b"]


def test_a_preemption_stops_only_its_attempt_and_a_cancel_always_wins() -> None:
    value = marker(2, "preempted by live job x")
    assert stops(value, 2) and not stops(value, 3)
    assert preempted_reason(value, 2) == "preempted by live job x"
    assert preempted_reason(value.encode(), 2) == "preempted by live job x"
    assert preempted_reason(value, 3) is None
    assert stops("1", 5) and preempted_reason("1", 5) is None
    assert not stops(None, 1) and preempted_reason(None, 1) is None

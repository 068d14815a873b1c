"""The scale hint of GET /v1/pools: needed = ceil(S * (arrivals + backlog / target wait))."""

from __future__ import annotations

from framefleet.scheduling.pools import workers_needed


def test_workers_needed_keeps_up_with_arrivals_and_clears_the_backlog_within_the_target() -> None:
    # 30 s jobs, one a second arriving: 30 workers keep up; 600 waiting cleared in 60 s need 300 more.
    assert (
        workers_needed(backlog=600, arrivals_per_second=1.0, mean_run_seconds=30, target_wait_seconds=60)
        == 330
    )
    # Nothing arriving, 10 short jobs waiting: one worker clears them within the target.
    assert workers_needed(backlog=10, arrivals_per_second=0, mean_run_seconds=2, target_wait_seconds=60) == 1
    assert workers_needed(backlog=0, arrivals_per_second=0, mean_run_seconds=5, target_wait_seconds=60) == 0


def test_without_a_measured_run_time_there_is_no_estimate_unless_there_is_no_work() -> None:
    assert (
        workers_needed(backlog=0, arrivals_per_second=0, mean_run_seconds=None, target_wait_seconds=60) == 0
    )
    assert (
        workers_needed(backlog=3, arrivals_per_second=0, mean_run_seconds=None, target_wait_seconds=60)
        is None
    )

"""Priority under load: a live job submitted behind 100 queued batch jobs starts before any further batch job;
aging lets a batch job through constant high-priority load."""

from __future__ import annotations

import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from framefleet.db.models import Job
from framefleet.db.session import session_scope
from tests.chaos.conftest import TERMINAL, TINY_OUTPUT, Stack, submit, wait, wait_state

pytestmark = pytest.mark.integration


def started(job_ids: list[str]) -> list[tuple[str, datetime]]:
    with session_scope() as session:
        rows = session.execute(
            sa.select(Job.id, Job.started_at).where(Job.id.in_(job_ids), Job.started_at.is_not(None))
        ).all()
    return [(r.id, r.started_at) for r in rows]


def test_live_job_behind_100_queued_batch_jobs_starts_next(
    stack: Stack, api: Any, key: str, clips: dict[str, Path]
) -> None:
    stack.start_beat()
    spec = {"input": clips["tiny"].as_uri(), "outputs": [TINY_OUTPUT]}
    batch = [submit(api, key, {**spec, "priority": "batch"})["id"] for _ in range(100)]
    stack.start_worker("p1")
    # The worker is busy draining batch work when the live job arrives.
    wait(lambda: len(started(batch)) >= 3, 30, "the worker to be draining batch jobs")
    live = submit(api, key, {**spec, "priority": "live"})
    submitted_at = datetime.fromisoformat(live["created_at"])
    done = wait_state(api, key, live["id"], TERMINAL, 30)
    assert done["state"] == "succeeded"
    live_started = datetime.fromisoformat(done["started_at"])
    overtaking = [job_id for job_id, at in started(batch) if submitted_at < at < live_started]
    # At most the batch job the worker had already taken off the queue when the live one was submitted.
    assert len(overtaking) <= 1, (
        f"{len(overtaking)} batch jobs started between the live job's submission and start"
    )
    before_live = sum(1 for _, at in started(batch) if at < live_started)
    assert before_live < 50, "the live job did not have to overtake a backlog: the test proved nothing"


def test_aging_lets_a_batch_job_through_constant_high_priority_load(
    stack: Stack, api: Any, key: str, clips: dict[str, Path]
) -> None:
    # Runs after the test above: clear what is left of its batch jobs, then age every second.
    # Those beyond the tenant's fair share of the queue wait `pending` in the database. The worker still
    # claims (and moves the tenant's next pending job up) meanwhile: on PostgreSQL this bulk update may be
    # chosen as a deadlock's victim, so it is tried again.
    for attempt in range(5):
        try:
            with session_scope() as session:
                waiting = Job.state.in_(("queued", "pending"))
                session.execute(sa.update(Job).where(waiting).values(state="canceled"))
            break
        except sa.exc.OperationalError:
            if attempt == 4:
                raise
            time.sleep(0.2)
    for proc in list(stack.procs):
        if proc.args[-1] == "beat":  # type: ignore[index]
            proc.terminate()
            proc.wait(15)
            stack.procs.remove(proc)
    stack.start_beat(FRAMEFLEET_AGING_SECONDS="1", FRAMEFLEET_AGING_MAX_PRIORITY="high")
    spec = {"input": clips["tiny"].as_uri(), "outputs": [TINY_OUTPUT]}
    high: list[str] = []
    stop = threading.Event()
    lowest_backlog = [10**6]

    def feed() -> None:
        # Keep several high-priority jobs waiting at every moment: without aging, batch would starve.
        while not stop.is_set():
            with session_scope() as session:
                backlog = (
                    session.scalar(sa.select(sa.func.count()).where(Job.id.in_(high), Job.state == "queued"))
                    if high
                    else 0
                )
            lowest_backlog[0] = min(lowest_backlog[0], backlog or 0) if len(high) > 8 else lowest_backlog[0]
            for _ in range(max(0, 6 - int(backlog or 0))):
                high.append(submit(api, key, {**spec, "priority": "high"})["id"])
            time.sleep(0.05)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    try:
        wait(lambda: len(high) >= 6, 10, "high-priority backlog")
        batch = submit(api, key, {**spec, "priority": "batch"})
        done = wait_state(api, key, batch["id"], TERMINAL, 60)
    finally:
        stop.set()
        feeder.join(10)
    assert done["state"] == "succeeded"
    assert done["effective_priority"] == "high" and done["priority"] == "batch"
    assert lowest_backlog[0] > 0, "the high-priority queue ran dry: the test proved nothing"
    with session_scope() as session:
        runs = session.scalar(
            sa.text("SELECT count(*) FROM job_transitions WHERE job_id = :id AND to_state = 'running'"),
            {"id": batch["id"]},
        )
    assert runs == 1, "an aged job runs once, although it was published twice"

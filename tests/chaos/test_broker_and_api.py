"""Redis restarted without persistence while 200 jobs wait, most of them for their fair share (none lost),
and the API killed during a stream of submissions (no acknowledged job lost)."""

from __future__ import annotations

import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from framefleet.config import Settings
from framefleet.db.models import Job, JobTransition
from framefleet.db.session import session_scope
from framefleet.keys import authenticate
from tests import services
from tests.chaos.conftest import TINY_OUTPUT, Stack, submit, wait

pytestmark = pytest.mark.integration


def states_of(job_ids: list[str]) -> Counter[str]:
    with session_scope() as session:
        return Counter(session.scalars(sa.select(Job.state).where(Job.id.in_(job_ids))))


def runs_per_job(job_ids: list[str]) -> Counter[str]:
    with session_scope() as session:
        rows = session.scalars(
            sa.select(JobTransition.job_id).where(
                JobTransition.job_id.in_(job_ids), JobTransition.to_state == "running"
            )
        )
        return Counter(rows)


def test_redis_restart_with_200_queued_jobs_loses_none(
    stack: Stack, api: Any, key: str, clips: dict[str, Path]
) -> None:
    stack.start_beat()
    spec = {"input": clips["tiny"].as_uri(), "outputs": [TINY_OUTPUT], "hardware": "cpu"}
    ids = [submit(api, key, spec)["id"] for _ in range(200)]
    queues = api.get("/v1/queues", headers={"X-API-Key": key}).json()
    normal = next(q for q in queues["items"] if q["name"] == "cpu.normal")
    # One tenant has its fair share of the queue in the broker (its cap); the rest wait in the database.
    cap = Settings().fair_share_in_flight
    assert 0 < cap < 200
    assert normal["depth"] == cap and normal["queued_jobs"] == cap
    assert states_of(ids) == Counter({"queued": cap, "pending": 200 - cap})

    # Every message is gone; the database still says which jobs are queued and which wait their turn.
    stack.restart_redis()
    from framefleet.redis_client import reset_clients

    reset_clients()
    # The beat's reconciler may already be putting the queued jobs' messages back (with only the cap queued,
    # it takes a moment); never those of jobs waiting for their turn.
    assert api.get("/v1/queues", headers={"X-API-Key": key}).json()["items"][2]["depth"] <= cap

    stack.start_workers("r1", "r2")
    wait(lambda: states_of(ids)["succeeded"] == 200, 180, f"all 200 jobs to succeed ({states_of(ids)})")
    runs = runs_per_job(ids)
    assert set(runs.values()) == {1}, "a job ran more than once"


def test_api_killed_during_submissions_loses_no_acknowledged_job(
    stack: Stack, key: str, clips: dict[str, Path]
) -> None:
    # Runs after the test above in the same stack: beat and two workers are up.
    if len(stack.procs) < 3:
        stack.start_beat()
        stack.start_workers("r1", "r2")
    port = services.free_port()
    api_proc = stack.start_api(port)
    spec = {"input": clips["tiny"].as_uri(), "outputs": [TINY_OUTPUT], "hardware": "cpu", "priority": "high"}
    acknowledged: list[str] = []
    refused = 0
    stop = threading.Event()
    lock = threading.Lock()

    def submitter() -> None:
        nonlocal refused
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=5) as http:
            while not stop.is_set():
                try:
                    response = http.post("/v1/jobs", json=spec)
                except httpx.HTTPError:
                    with lock:
                        refused += 1
                    time.sleep(0.05)
                    continue
                if response.status_code == 201:
                    with lock:
                        acknowledged.append(response.json()["id"])

    threads = [threading.Thread(target=submitter) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        wait(lambda: len(acknowledged) >= 30, 60, "30 acknowledged submissions")
        api_proc.send_signal(signal.SIGKILL)  # mid-stream: requests in flight are cut off
        api_proc.wait(10)
        killed_at = len(acknowledged)
        time.sleep(0.5)
        stack.start_api(port)
        wait(lambda: len(acknowledged) >= killed_at + 30, 60, "30 more acknowledged submissions")
    finally:
        stop.set()
        for thread in threads:
            thread.join(10)
    assert refused > 0, "the API was never seen down"
    ids = list(acknowledged)
    wait(
        lambda: states_of(ids)["succeeded"] == len(ids),
        120,
        f"acknowledged jobs to succeed ({states_of(ids)})",
    )
    # Jobs the API committed but could not acknowledge before it died are not lost either.
    with session_scope() as session:
        principal = authenticate(session, key)
        assert principal is not None
        tenant_jobs = list(session.scalars(sa.select(Job.id).where(Job.tenant_id == principal.tenant_id)))
    assert len(tenant_jobs) >= len(ids)
    wait(
        lambda: states_of(tenant_jobs)["succeeded"] == len(tenant_jobs), 60, "every committed job to succeed"
    )
    assert set(runs_per_job(tenant_jobs).values()) == {1}

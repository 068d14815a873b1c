"""Worker pool management with a real worker: an operator drains the worker while it runs a job; the job
finishes, the next job is not taken while the node is held, GET /v1/pools shows the held worker and the
backlog, and uncordoning (from the CLI) lets the node take the waiting job. Own database and Redis: the
worker must see only this test's jobs."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from framefleet.api.app import create_app
from framefleet.db.models import AuditEvent
from framefleet.db.session import session_scope
from framefleet.keys import create_key
from tests import services
from tests.conftest import make_clip
from tests.integration.conftest import wait_for_state
from tests.isolated import private_database, settings_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# Long enough (a few seconds on a busy machine) to be running when the drain arrives.
SLOW = {"container": "mp4", "video": {"codec": "hevc", "preset": "medium", "height": 240}}
QUICK = {"container": "ts", "video": {"height": 64, "preset": "ultrafast"}}


@pytest.fixture()
def own_stack(worker_env: dict[str, str], session_dir: Path, tmp_path: Path) -> Iterator[dict[str, str]]:
    redis_server = services.start_redis(tmp_path / "redis")
    values = {
        "FRAMEFLEET_DATABASE_URL": private_database(worker_env["FRAMEFLEET_DATABASE_URL"], tmp_path / "db"),
        "FRAMEFLEET_REDIS_URL": redis_server.url,
        "FRAMEFLEET_WORKER_CONTROL_POLL_SECONDS": "0.2",
    }
    try:
        with settings_env(values):
            yield {**worker_env, **values}
    finally:
        services.stop(redis_server.proc)


def test_a_drained_worker_finishes_its_job_and_takes_no_new_one(
    own_stack: dict[str, str], ffmpeg: str, media_root: Path, tmp_path: Path
) -> None:
    clip = make_clip(ffmpeg, media_root / "inputs" / "drain.mp4", seconds=3)
    with session_scope() as session:
        member, _ = create_key(session, tenant="drain-tenant", role="member")
        operator, _ = create_key(session, tenant="ops", role="operator")
    as_member, as_operator = {"X-API-Key": member}, {"X-API-Key": operator}
    log = tmp_path / "worker-drain.log"
    proc = services.start_worker(own_stack, log, name="wd")
    try:
        with TestClient(create_app()) as api:

            def submit(output: dict[str, Any]) -> str:
                created = api.post(
                    "/v1/jobs", json={"input": clip.as_uri(), "outputs": [output]}, headers=as_member
                )
                assert created.status_code == 201, created.text
                job_id: str = created.json()["id"]
                return job_id

            def job(job_id: str) -> dict[str, Any]:
                view: dict[str, Any] = api.get(f"/v1/jobs/{job_id}", headers=as_member).json()
                return view

            first = submit(SLOW)
            running = wait_for_state(lambda: job(first), {"running", "succeeded", "failed"}, timeout=60)
            assert running["state"] == "running", running
            worker_id = api.get("/v1/workers", headers=as_operator).json()["items"][0]["id"]
            # Members may not; operators may, and the answer shows the job it still runs.
            assert api.post(f"/v1/workers/{worker_id}/drain", headers=as_member).status_code == 403
            drained = api.post(
                f"/v1/workers/{worker_id}/drain", json={"reason": "kernel update"}, headers=as_operator
            )
            assert drained.status_code == 200, drained.text
            assert drained.json()["state"] == "draining" and drained.json()["running_jobs"] == [first]
            time.sleep(0.6)  # a few polls: the node has stopped consuming
            second = submit(QUICK)

            # The running job is not disturbed; it ends as it would have.
            assert (
                wait_for_state(lambda: job(first), {"succeeded", "failed"}, timeout=90)["state"]
                == "succeeded"
            )
            node = api.get(f"/v1/workers/{worker_id}", headers=as_operator).json()
            deadline = time.monotonic() + 10
            while node["state"] != "drained" and time.monotonic() < deadline:
                time.sleep(0.2)  # the process says it is idle at its next heartbeat
                node = api.get(f"/v1/workers/{worker_id}", headers=as_operator).json()
            assert node["state"] == "drained" and node["reason"] == "kernel update", node
            time.sleep(2.0)  # ten polls of a node that would take the job at once if it consumed
            waiting = job(second)
            assert (waiting["state"], waiting["started_at"]) == ("queued", None), waiting
            # The node stopped fetching (its consumer), rather than taking the job and passing it on.
            lines = log.read_text().splitlines()
            assert any("worker hold applied" in line for line in lines)
            assert not any("passing job on" in line and second in line for line in lines)
            listed = api.get("/v1/workers", headers=as_operator).json()["items"][0]
            assert listed["hold"] == "draining"

            cpu = next(
                p for p in api.get("/v1/pools", headers=as_operator).json()["items"] if p["pool"] == "cpu"
            )
            assert cpu["workers"] == {"alive": 1, "busy": 0, "held": 1}
            assert cpu["backlog"]["total"] == 1 and cpu["backlog"]["by_priority"]["normal"] == 1
            assert cpu["drain_rate_per_minute"] > 0 and cpu["mean_run_seconds"] > 0
            assert cpu["workers_needed"] >= 1

            # Uncordoned from the operator's shell: the node takes the waiting job.
            result = subprocess.run(
                [sys.executable, "-m", "framefleet.cli.main", "workers", "uncordon", worker_id, "--json"],
                env=own_stack,
                capture_output=True,
                text=True,
                timeout=60,
                check=False,
            )
            assert result.returncode == 0, result.stderr
            assert json.loads(result.stdout)["state"] == "active"
            assert (
                wait_for_state(lambda: job(second), {"succeeded", "failed"}, timeout=60)["state"]
                == "succeeded"
            )
    finally:
        services.stop(proc, timeout=20)
    with session_scope() as session:
        actions = session.execute(
            sa.select(AuditEvent.action, AuditEvent.actor, AuditEvent.details).where(
                AuditEvent.action.in_(("worker.drain", "worker.uncordon"))
            )
        ).all()
    # Audited in the transaction of each change: who held the node, why, and who let it go.
    assert [(a, actor.split(":")[0], d) for a, actor, d in actions] == [
        ("worker.drain", "key", {"reason": "kernel update"}),
        ("worker.uncordon", "cli", None),
    ]

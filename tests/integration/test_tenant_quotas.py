"""max_running_jobs with a real worker of three slots: a tenant limited to one running job gets its jobs run
one at a time, held ones in `pending` (quota-running) and released in submission order — none lost."""

from __future__ import annotations

import itertools
import uuid
from pathlib import Path
from typing import Any

import pytest

from framefleet.db.session import session_scope
from framefleet.keys import create_key
from framefleet.tenancy import service as tenancy_service
from framefleet.tenancy.audit import Actor
from tests import services
from tests.integration.conftest import wait_for_state

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def test_a_tenant_runs_at_most_its_max_running_jobs_and_none_is_lost(
    api: Any, clip: Path, worker_env: dict[str, str], session_dir: Path
) -> None:
    tenant = f"quota-{uuid.uuid4().hex[:8]}"
    with session_scope() as session:
        tenancy_service.create_tenant(
            session, name=tenant, settings={"quotas": {"max_running_jobs": 1}}, actor=Actor(actor="cli")
        )
        member, _ = create_key(session, tenant=tenant, role="member")
    spec = {
        "input": clip.as_uri(),
        "outputs": [{"name": "web", "container": "mp4", "video": {"height": 120, "preset": "veryfast"}}],
    }
    ids = []
    for _ in range(4):
        created = api.post("/v1/jobs", json=spec, headers={"X-API-Key": member})
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    proc = services.start_worker(
        worker_env, session_dir / "logs" / "worker-quotas.log", concurrency=3, name="wq"
    )
    try:
        for job_id in ids:
            done = wait_for_state(
                lambda job_id=job_id: api.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": member}).json(),
                {"succeeded", "failed", "canceled"},
                timeout=240,
            )
            assert done["state"] == "succeeded", done
    finally:
        services.stop(proc, timeout=20)
    runs = []
    held_starts = []
    for job_id in ids:  # in submission order
        history = api.get(f"/v1/jobs/{job_id}/history", headers={"X-API-Key": member}).json()["items"]
        started = next(t["at"] for t in history if t["to_state"] == "running")
        ended = next(t["at"] for t in history if t["to_state"] == "succeeded")
        runs.append((started, ended))
        if any(t["to_state"] == "pending" and "runs its limit" in t["reason"] for t in history):
            held_starts.append(started)
    # The worker had three slots, yet the tenant's jobs never overlapped; some had to wait for a slot.
    ordered = sorted(runs)
    assert all(prev_end <= next_start for (_, prev_end), (next_start, _) in itertools.pairwise(ordered)), runs
    assert held_starts
    # The held ones were released in submission order (which job won the first slot is the claims' race).
    assert held_starts == sorted(held_starts)
    # Each success was counted by the worker as it was recorded: no scan, same figures as the rows.
    sizes = [
        output["size_bytes"]
        for job_id in ids
        for output in api.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": member}).json()["outputs"]
    ]
    month = api.get("/v1/usage", headers={"X-API-Key": member}).json()["periods"][0]
    assert (month["jobs_succeeded"], month["output_bytes"]) == (4, sum(sizes))
    assert month["media_minutes"] > 0

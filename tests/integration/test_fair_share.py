"""Fair share with a real worker, as installed (on by default): tenant A floods the batch queue, tenant B then
submits five jobs; B's jobs start within the first few of A's completions instead of behind A's backlog."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from framefleet.api.app import create_app
from framefleet.config import Settings
from framefleet.db.session import session_scope
from framefleet.keys import create_key
from tests import services
from tests.integration.conftest import wait_for_state

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

FLOOD = 120
# The default cap, which the API and the worker below both use.
IN_FLIGHT = Settings.model_fields["fair_share_in_flight"].default


@pytest.fixture()
def fair_api(test_env: dict[str, str]) -> Iterator[TestClient]:
    settings = Settings()
    assert settings.fair_share_in_flight == IN_FLIGHT > 0
    with TestClient(create_app(settings)) as client:
        yield client


def test_a_flooding_tenant_does_not_hold_back_another_tenants_first_jobs(
    fair_api: TestClient, clip: Path, worker_env: dict[str, str], session_dir: Path
) -> None:
    with session_scope() as session:
        flooder, _ = create_key(session, tenant=f"flood-{uuid.uuid4().hex[:8]}", role="member")
        other, _ = create_key(session, tenant=f"other-{uuid.uuid4().hex[:8]}", role="member")
    spec = {
        "input": clip.as_uri(),
        "priority": "batch",
        "outputs": [{"name": "web", "container": "mp4", "video": {"height": 64, "preset": "ultrafast"}}],
    }

    def submit_as(key: str) -> dict[str, Any]:
        created = fair_api.post("/v1/jobs", json=spec, headers={"X-API-Key": key})
        assert created.status_code == 201, created.text
        job: dict[str, Any] = created.json()
        return job

    flood = [submit_as(flooder) for _ in range(FLOOD)]
    # Beyond its cap in the batch queue, A's jobs wait in the database, in order, reason shown.
    assert [job["state"] for job in flood[:IN_FLIGHT]] == ["queued"] * IN_FLIGHT
    assert {(job["state"], job["pending_reason"]) for job in flood[IN_FLIGHT:]} == {("pending", "fair-share")}
    mine = [submit_as(other)["id"] for _ in range(5)]
    assert "FRAMEFLEET_FAIR_SHARE_IN_FLIGHT" not in worker_env
    proc = services.start_worker(
        worker_env, session_dir / "logs" / "worker-fair-share.log", concurrency=1, name="wf"
    )
    try:
        for job_id in mine:
            done = wait_for_state(
                lambda job_id=job_id: fair_api.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": other}).json(),
                {"succeeded", "failed", "canceled"},
                timeout=180,
            )
            assert done["state"] == "succeeded", done
        last_start = max(
            fair_api.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": other}).json()["started_at"]
            for job_id in mine
        )
        views = [
            fair_api.get(f"/v1/jobs/{job['id']}", headers={"X-API-Key": flooder}).json() for job in flood
        ]
        ahead = [v for v in views if v["finished_at"] is not None and v["finished_at"] <= last_start]
        # B waited behind A's jobs already in line (its cap), interleaved after that: not behind 120.
        assert len(ahead) <= IN_FLIGHT + 5, len(ahead)
        # A's backlog went on in submission order.
        started = [v["started_at"] for v in views if v["started_at"] is not None]
        assert started == sorted(started)
    finally:
        for job in flood:
            fair_api.post(f"/v1/jobs/{job['id']}/cancel", headers={"X-API-Key": flooder})
        services.stop(proc, timeout=20)

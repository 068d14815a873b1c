"""A suspended tenant's queued job is held by a real worker (pending, reason shown), and runs once the tenant
is reactivated."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import pytest

from framefleet.db.session import session_scope
from framefleet.keys import create_key
from tests.integration.conftest import wait_for_state

pytestmark = pytest.mark.integration


def test_worker_holds_a_suspended_tenants_job_until_reactivation(
    api: Any, clip: Path, request: pytest.FixtureRequest
) -> None:
    tenant = f"susp-{uuid.uuid4().hex[:8]}"
    with session_scope() as session:
        member, _ = create_key(session, tenant=tenant, role="member")
        admin, _ = create_key(session, tenant=f"ops-{uuid.uuid4().hex[:8]}", role="admin")
    spec = {
        "input": clip.as_uri(),
        "outputs": [{"name": "web", "container": "mp4", "video": {"height": 120, "preset": "veryfast"}}],
    }
    created = api.post("/v1/jobs", json=spec, headers={"X-API-Key": member})
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    assert api.post(f"/v1/tenants/{tenant}/suspend", headers={"X-API-Key": admin}).status_code == 200

    def as_admin() -> dict[str, Any]:
        response = api.get(f"/v1/jobs/{job_id}?tenant={tenant}", headers={"X-API-Key": admin})
        assert response.status_code == 200, response.text
        view: dict[str, Any] = response.json()
        return view

    # The worker starts only now, with the job queued and its tenant suspended.
    request.getfixturevalue("worker")
    held = wait_for_state(as_admin, {"pending", "running", "succeeded", "failed"}, timeout=120)
    assert (held["state"], held["pending_reason"], held["attempt"]) == ("pending", "tenant-suspended", 0)

    reactivated = api.post(f"/v1/tenants/{tenant}/reactivate", headers={"X-API-Key": admin})
    assert reactivated.json()["released_jobs"] == 1
    done = wait_for_state(as_admin, {"succeeded", "failed", "canceled"}, timeout=180)
    assert done["state"] == "succeeded", done
    history = api.get(f"/v1/jobs/{job_id}/history", headers={"X-API-Key": member}).json()["items"]
    assert [t["to_state"] for t in history] == ["queued", "pending", "queued", "running", "succeeded"]

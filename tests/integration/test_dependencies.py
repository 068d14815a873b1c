"""Dependencies with a real worker and the beat's loop: transcode → package → thumbnail runs in order, each
step reading the previous step's output; a failing parent cancels its dependants."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from framefleet.celery_app import celery_for
from framefleet.config import Settings
from framefleet.db.session import session_scope
from framefleet.keys import create_key
from framefleet.redis_client import get_redis
from framefleet.scheduling.maintenance import LeaderLock, Maintenance
from tests.integration.conftest import wait_for_state

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ENDED = {"succeeded", "failed", "canceled"}
SMALL = {"height": 64, "preset": "ultrafast"}


@pytest.fixture()
def beat(test_env: dict[str, str]) -> Iterator[None]:
    """The beat's maintenance loop (leader lock on the real Redis) in a thread of the test process."""
    settings = Settings()
    loop = Maintenance(
        settings,
        celery=celery_for(settings),
        lock=LeaderLock(get_redis, settings.beat_leader_ttl_seconds, identity=f"test-{uuid.uuid4().hex[:6]}"),
    )
    stop = threading.Event()
    thread = threading.Thread(target=loop.run_forever, args=(stop,), daemon=True)
    thread.start()
    yield
    stop.set()
    thread.join(5)


def test_a_chain_runs_in_order_on_each_parents_output_and_a_failure_cancels_the_rest(
    api: TestClient, clip: Path, worker: Any, beat: None
) -> None:
    with session_scope() as session:
        key, _ = create_key(session, tenant=f"chain-{uuid.uuid4().hex[:8]}", role="member")
    headers = {"X-API-Key": key}

    def post(spec: dict[str, Any]) -> str:
        created = api.post("/v1/jobs", json=spec, headers=headers)
        assert created.status_code == 201, created.text
        job_id: str = created.json()["id"]
        return job_id

    def get(job_id: str) -> dict[str, Any]:
        view: dict[str, Any] = api.get(f"/v1/jobs/{job_id}", headers=headers).json()
        return view

    transcode = post(
        {"input": clip.as_uri(), "outputs": [{"name": "hd", "container": "mp4", "video": SMALL}]}
    )
    package = post(
        {
            "input": {"from": transcode, "output": "hd"},
            "depends_on": [transcode],
            "outputs": [{"name": "pkg", "container": "mkv", "video": SMALL}],
        }
    )
    thumbnail = post({"input": {"from": package, "output": "pkg"}, "depends_on": [package], "poster": {}})
    assert get(thumbnail)["pending_reason"] == "dependencies"
    views = {
        job_id: wait_for_state(lambda j=job_id: get(j), ENDED, 120)
        for job_id in (transcode, package, thumbnail)
    }
    assert [views[j]["state"] for j in (transcode, package, thumbnail)] == ["succeeded"] * 3, views
    # Each step started after its parent ended, on the parent's output.
    assert views[transcode]["finished_at"] <= views[package]["started_at"]
    assert views[package]["finished_at"] <= views[thumbnail]["started_at"]
    assert views[package]["spec"]["input"] == views[transcode]["outputs"][0]["uri"]
    assert views[thumbnail]["spec"]["input"] == views[package]["outputs"][0]["uri"]
    assert views[thumbnail]["outputs"][0]["kind"] == "poster"

    broken = post(
        {"input": clip.as_uri() + ".missing", "outputs": [{"name": "hd", "container": "mp4", "video": SMALL}]}
    )
    after = post({"input": {"from": broken, "output": "hd"}, "depends_on": [broken], "poster": {}})
    cleanup = post(
        {"input": clip.as_uri(), "depends_on": [{"job": broken, "condition": "failed"}], "poster": {}}
    )
    assert wait_for_state(lambda: get(broken), ENDED, 60)["state"] == "failed"
    canceled = wait_for_state(lambda: get(after), ENDED, 30)
    assert canceled["state"] == "canceled" and canceled["error"].startswith(f"parent failed: {broken}")
    assert wait_for_state(lambda: get(cleanup), ENDED, 60)["state"] == "succeeded"

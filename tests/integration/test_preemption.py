"""Preemption with a real worker (one slot) and the beat's loop: a long batch job runs, a live job waits
past the threshold, the batch job is stopped and handed back (not a failed attempt), the live job runs,
then the batch job runs again to success. Own database and Redis: another test's idle worker on the shared
ones would take the live job (rightly: a free slot needs no preemption) and prove nothing."""

from __future__ import annotations

import threading
import time
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
from tests import services
from tests.conftest import make_clip
from tests.integration.conftest import wait_for_state
from tests.isolated import private_database, settings_env

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]

ENDED = {"succeeded", "failed", "canceled"}


@pytest.fixture()
def own_stack(worker_env: dict[str, str], tmp_path: Path) -> Iterator[dict[str, str]]:
    """This test's own database and Redis, applied to this process too, and one worker with one slot."""
    redis_server = services.start_redis(tmp_path / "redis")
    values = {
        "FRAMEFLEET_DATABASE_URL": private_database(worker_env["FRAMEFLEET_DATABASE_URL"], tmp_path / "db"),
        "FRAMEFLEET_REDIS_URL": redis_server.url,
    }
    try:
        with settings_env(values):
            env = {**worker_env, **values}
            proc = services.start_worker(env, tmp_path / "worker-preempt.log", name="wp")
            try:
                yield env
            finally:
                services.stop(proc, timeout=20)
    finally:
        services.stop(redis_server.proc)


@pytest.fixture()
def api(own_stack: dict[str, str]) -> Iterator[TestClient]:
    from framefleet.api.app import create_app

    with TestClient(create_app()) as client:
        yield client


@pytest.fixture()
def preempting_beat(own_stack: dict[str, str]) -> Iterator[Settings]:
    """The beat's loop with preemption on for the cpu pool (threshold 0.5 s), in a thread."""
    settings = Settings(preempt_pools=["cpu"], preempt_after_seconds=0.5)
    loop = Maintenance(
        settings,
        celery=celery_for(settings),
        lock=LeaderLock(get_redis, settings.beat_leader_ttl_seconds, identity=f"test-{uuid.uuid4().hex[:6]}"),
    )
    stop = threading.Event()
    thread = threading.Thread(target=loop.run_forever, args=(stop,), daemon=True)
    thread.start()
    yield settings
    stop.set()
    thread.join(5)


def test_a_live_job_preempts_a_running_batch_job_which_then_runs_again(
    api: TestClient, ffmpeg: str, media_root: Path, preempting_beat: Settings
) -> None:
    long_clip = make_clip(ffmpeg, media_root / "inputs" / "preempt-long.mp4", seconds=40, audio=False)
    short_clip = make_clip(ffmpeg, media_root / "inputs" / "preempt-short.mp4", seconds=0.5, size="160x120")
    with session_scope() as session:
        key, _ = create_key(session, tenant=f"pre-{uuid.uuid4().hex[:8]}", role="member")
    headers = {"X-API-Key": key}

    def post(spec: dict[str, Any]) -> str:
        created = api.post("/v1/jobs", json=spec, headers=headers)
        assert created.status_code == 201, created.text
        job_id: str = created.json()["id"]
        return job_id

    def get(job_id: str) -> dict[str, Any]:
        view: dict[str, Any] = api.get(f"/v1/jobs/{job_id}", headers=headers).json()
        return view

    batch = post(
        {
            "input": long_clip.as_uri(),
            "priority": "batch",
            "outputs": [{"name": "a", "container": "mp4", "video": {"preset": "veryslow"}}],
        }
    )
    deadline = time.monotonic() + 60
    while get(batch)["progress"] <= 0:  # ffmpeg is encoding
        assert time.monotonic() < deadline, get(batch)
        time.sleep(0.05)
    live = post(
        {"input": short_clip.as_uri(), "priority": "live", "outputs": [{"name": "b", "container": "mp4"}]}
    )

    live_view = wait_for_state(lambda: get(live), ENDED, 60)
    assert live_view["state"] == "succeeded", live_view
    batch_view = wait_for_state(lambda: get(batch), ENDED, 120)
    assert batch_view["state"] == "succeeded", batch_view
    # Handed back, not failed: no failed attempt counted; the attempt number (the ownership token) moved on.
    assert batch_view["failures"] == 0 and batch_view["attempt"] == 2
    history = api.get(f"/v1/jobs/{batch}/history", headers=headers).json()["items"]
    moves = [(h["from_state"], h["to_state"], h["reason"]) for h in history]
    assert [m[:2] for m in moves] == [
        (None, "queued"),
        ("queued", "running"),
        ("running", "queued"),
        ("queued", "running"),
        ("running", "succeeded"),
    ], moves
    assert moves[2][2].startswith(f"preempted by live job {live}"), moves
    # The live job took the slot: it ran while the batch job waited, and ended before its second start.
    assert live_view["finished_at"] <= history[3]["at"]
    assert history[2]["at"] <= live_view["started_at"]

"""Strict priority: a worker drains its pool's queues live → high → normal → low → batch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from framefleet.config import get_settings
from framefleet.db.models import Job
from framefleet.db.session import session_scope
from framefleet.redis_client import get_redis
from tests import services
from tests.integration.conftest import wait_for_state

pytestmark = pytest.mark.integration


def test_live_job_behind_50_batch_jobs_starts_next(
    api: Any, tenant_key: tuple[str, str], clip: Path, worker_env: dict[str, str], session_dir: Path
) -> None:
    _, key = tenant_key
    headers = {"X-API-Key": key}
    redis = get_redis()
    for queue in ("cpu.live", "cpu.high", "cpu.normal", "cpu.low", "cpu.batch"):
        redis.delete(queue)
    small = {"input": clip.as_uri(), "outputs": [{"container": "ts", "video": {"height": 64}}]}
    batch_ids = []
    for _ in range(50):
        response = api.post("/v1/jobs", json={**small, "priority": "batch"}, headers=headers)
        assert response.status_code == 201
        batch_ids.append(response.json()["id"])
    live = api.post("/v1/jobs", json={**small, "priority": "live"}, headers=headers).json()
    # One tenant has at most its fair share of a queue in the broker; the rest wait in the database.
    in_flight = get_settings().fair_share_in_flight
    in_broker = min(50, in_flight) if in_flight else 50
    assert redis.llen("cpu.batch") == in_broker and redis.llen("cpu.live") == 1

    proc = services.start_worker(worker_env, session_dir / "logs" / "worker-priority.log")
    try:
        wait_for_state(lambda: api.get(f"/v1/jobs/{live['id']}", headers=headers).json(), {"succeeded"}, 60)
    finally:
        services.stop(proc, timeout=20)
    with session_scope() as session:
        started = session.execute(
            sa.select(Job.id, Job.started_at)
            .where(Job.id.in_([*batch_ids, live["id"]]), Job.started_at.is_not(None))
            .order_by(Job.started_at)
        ).all()
    assert started[0].id == live["id"], "a batch job started before the live job"
    # Leave nothing behind for other tests' workers.
    for queue in ("cpu.batch",):
        redis.delete(queue)

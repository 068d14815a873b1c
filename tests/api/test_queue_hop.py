"""Queue hopping: PATCH /v1/jobs/{id} moves a waiting job's message to its new priority queue, audited."""

from __future__ import annotations

import uuid

import redis
from fastapi import FastAPI
from fastapi.testclient import TestClient

from framefleet.config import Settings
from framefleet.scheduling import broker
from framefleet.workflows import dependencies
from tests.api.conftest import KeyMaker, move_job, submit


def _queues_holding(client: redis.Redis, job_id: str) -> list[str]:
    snap = broker.snapshot(client, delivered_within=0)
    return sorted(key.split(broker.PRIORITY_SEP)[0] for key, _ in snap.waiting.get(job_id, []))


def test_a_queued_job_moves_to_its_new_queue_once_and_is_audited(
    api_app: FastAPI, client: TestClient, make_key: KeyMaker, redis_client: redis.Redis
) -> None:
    tenant = f"hop-{uuid.uuid4().hex[:8]}"
    headers = make_key(tenant)
    job = submit(client, headers, priority="batch", hardware="cpu")
    assert _queues_holding(redis_client, job["id"]) == ["cpu.batch"]

    response = client.patch(f"/v1/jobs/{job['id']}", json={"priority": "high"}, headers=headers)
    assert response.status_code == 200, response.text
    assert response.json()["priority"] == response.json()["effective_priority"] == "high"
    # The old message is gone: only the new queue holds the job.
    assert _queues_holding(redis_client, job["id"]) == ["cpu.high"]

    api_app.state.audit_writer.flush()
    rows = client.get(
        "/v1/audit", params={"action": "jobs.change", "tenant": tenant}, headers=headers
    ).json()["items"]
    assert [(row["outcome"], row["target"]) for row in rows] == [("ok", f"job_id={job['id']}")]


def test_a_running_or_ended_job_is_409_and_bad_input_422(
    api_settings: Settings, client: TestClient, make_key: KeyMaker
) -> None:
    headers = make_key(f"hop-{uuid.uuid4().hex[:8]}")
    job = submit(client, headers)
    bad = client.patch(f"/v1/jobs/{job['id']}", json={"priority": "urgent"}, headers=headers)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "priority"
    move_job(api_settings.database_url, job["id"], "running")
    refused = client.patch(f"/v1/jobs/{job['id']}", json={"priority": "high"}, headers=headers)
    assert refused.status_code == 409, refused.text
    assert refused.json()["type"].endswith("/job-not-waiting") and refused.json()["state"] == "running"
    other = make_key(f"hop-{uuid.uuid4().hex[:8]}")
    assert client.patch(f"/v1/jobs/{job['id']}", json={"priority": "high"}, headers=other).status_code == 404


def test_a_pending_job_takes_its_new_priority_to_the_queue_it_is_released_to(
    api_settings: Settings, client: TestClient, make_key: KeyMaker, redis_client: redis.Redis
) -> None:
    headers = make_key(f"hop-{uuid.uuid4().hex[:8]}")
    parent = submit(client, headers, hardware="cpu")
    child = submit(client, headers, hardware="cpu", priority="low", depends_on=[parent["id"]])
    moved = client.patch(f"/v1/jobs/{child['id']}", json={"priority": "live"}, headers=headers)
    assert moved.status_code == 200 and moved.json()["state"] == "pending"
    assert _queues_holding(redis_client, child["id"]) == []  # nothing published while it waits
    move_job(api_settings.database_url, parent["id"], "running", "succeeded")
    dependencies.sweep(api_settings)
    assert _queues_holding(redis_client, child["id"]) == ["cpu.live"]

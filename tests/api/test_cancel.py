"""POST /v1/jobs/{id}/cancel and GET /v1/jobs/{id}/history."""

from __future__ import annotations

import redis
from fastapi.testclient import TestClient

from framefleet.config import Settings
from framefleet.events import history
from framefleet.jobs.service import cancel_key
from tests.api.conftest import move_job, submit


def test_cancel_queued_job(client: TestClient, auth: dict[str, str], redis_client: redis.Redis) -> None:
    job = submit(client, auth)

    response = client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)

    assert response.status_code == 200, response.text
    assert response.json()["state"] == "canceled"
    assert response.json()["finished_at"] is not None
    assert client.get(f"/v1/jobs/{job['id']}", headers=auth).json()["state"] == "canceled"

    transitions = client.get(f"/v1/jobs/{job['id']}/history", headers=auth).json()
    assert transitions["job_id"] == job["id"]
    assert [(t["from_state"], t["to_state"]) for t in transitions["items"]] == [
        (None, "queued"),
        ("queued", "canceled"),
    ]
    assert transitions["items"][1]["reason"] == "canceled by client"

    # Followers of the job's events learn that it ended.
    published = history(redis_client, job["id"])
    assert [e.type for e in published] == ["state", "done"]
    assert published[-1].data["state"] == "canceled"


def test_cancel_running_job_asks_the_worker(
    client: TestClient, auth: dict[str, str], api_settings: Settings, redis_client: redis.Redis
) -> None:
    job = submit(client, auth)
    move_job(api_settings.database_url, job["id"], "running")

    response = client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)

    assert response.status_code == 202, response.text
    body = response.json()
    assert body["state"] == "running"
    assert body["cancel_requested"] is True
    assert redis_client.get(cancel_key(job["id"])) == "1"


def test_cancel_finished_job_is_409(client: TestClient, auth: dict[str, str], api_settings: Settings) -> None:
    job = submit(client, auth)
    move_job(api_settings.database_url, job["id"], "running", "succeeded")

    response = client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)

    assert response.status_code == 409
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["type"] == "https://framefleet.dev/problems/job-finished"
    assert "already ended (succeeded)" in problem["detail"]
    assert problem["state"] == "succeeded"
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth).status_code == 409


def test_cancel_twice(client: TestClient, auth: dict[str, str]) -> None:
    job = submit(client, auth)
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth).status_code == 200
    again = client.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)
    assert again.status_code == 409
    assert "canceled" in again.json()["detail"]


def test_history_lists_every_transition(
    client: TestClient, auth: dict[str, str], api_settings: Settings
) -> None:
    job = submit(client, auth)
    move_job(api_settings.database_url, job["id"], "running", "retrying", "queued", "running", "failed")

    items = client.get(f"/v1/jobs/{job['id']}/history", headers=auth).json()["items"]

    assert [t["to_state"] for t in items] == ["queued", "running", "retrying", "queued", "running", "failed"]
    fields = {"from_state", "to_state", "at", "reason", "worker", "attempt", "actor"}
    assert all(set(t) == fields for t in items)

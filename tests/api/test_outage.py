"""When Redis or the database is down, the API answers 503 `unavailable` with Retry-After, never a 500,
and a change it could commit is kept."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from framefleet.api.app import create_app
from framefleet.config import Settings
from framefleet.db.models import Job
from framefleet.db.session import session_scope
from tests import services
from tests.api.conftest import move_job, submit

UNAVAILABLE = "https://framefleet.dev/problems/unavailable"


@pytest.fixture()
def no_redis(api_settings: Settings) -> Iterator[TestClient]:
    """A client of an API whose Redis is not running (the database is)."""
    dead = f"redis://127.0.0.1:{services.free_port()}/0"
    with TestClient(create_app(api_settings.model_copy(update={"redis_url": dead}))) as client:
        yield client


def test_cancel_of_a_running_job_without_redis_is_503_and_the_request_is_kept(
    no_redis: TestClient, auth: dict[str, str], api_settings: Settings
) -> None:
    job = submit(no_redis, auth)
    move_job(api_settings.database_url, job["id"], "running")

    response = no_redis.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)

    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "5"
    assert response.json()["type"] == UNAVAILABLE
    assert response.json()["detail"] == "Redis cannot be reached; try again shortly"
    with session_scope(api_settings.database_url) as session:
        row = session.get(Job, job["id"])
        assert row is not None and row.cancel_requested and row.state == "running"


def test_cancel_of_a_queued_job_without_redis_still_cancels(
    no_redis: TestClient, auth: dict[str, str]
) -> None:
    job = submit(no_redis, auth)

    response = no_redis.post(f"/v1/jobs/{job['id']}/cancel", headers=auth)

    assert response.status_code == 200, response.text
    assert response.json()["state"] == "canceled"


def test_an_unreachable_database_is_503(api_settings: Settings, auth: dict[str, str]) -> None:
    dead = f"postgresql://framefleet@127.0.0.1:{services.free_port()}/framefleet"
    app = create_app(api_settings.model_copy(update={"database_url": dead}))
    with TestClient(app) as client:
        response = client.get("/v1/jobs", headers=auth)

    assert response.status_code == 503, response.text
    assert response.json()["type"] == UNAVAILABLE
    assert response.json()["detail"] == "the database cannot be reached; try again shortly"

"""POST /v1/jobs: creation, dispatch to the broker, idempotency and validation problems."""

from __future__ import annotations

import json
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import redis
from fastapi.testclient import TestClient
from prometheus_client import REGISTRY

from framefleet.api.app import create_app
from framefleet.config import Settings
from framefleet.db.models import Job
from framefleet.db.session import session_scope
from tests import services
from tests.api.conftest import job_body, submit

PROBLEM = "application/problem+json"


def _queued_task_ids(client: redis.Redis, queue: str) -> list[str]:
    """Job ids of the run_job messages waiting in a broker queue."""
    messages = [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
    return [m["headers"]["argsrepr"] for m in messages if m["headers"]["task"] == "framefleet.run_job"]


def test_submit_creates_job_and_dispatches_it(
    client: TestClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    before = REGISTRY.get_sample_value("jobs_submitted_total", {"priority": "high"}) or 0.0
    response = client.post("/v1/jobs", json=job_body(priority="high"), headers=auth)

    assert response.status_code == 201, response.text
    job = response.json()
    assert response.headers["Location"] == f"/v1/jobs/{job['id']}"
    assert job["state"] == "queued"
    assert job["priority"] == "high"
    assert job["pool"] == "cpu"
    assert job["outputs"] == []
    # The stored spec is normalised: defaults for the container are written in.
    assert job["spec"]["outputs"][0]["video"]["codec"] == "h264"
    assert job["spec"]["outputs"][0]["audio"]["codec"] == "aac"

    fetched = client.get(response.headers["Location"], headers=auth)
    assert fetched.status_code == 200
    assert fetched.json()["id"] == job["id"]

    assert repr([job["id"]]) in _queued_task_ids(redis_client, "cpu.high")
    after = REGISTRY.get_sample_value("jobs_submitted_total", {"priority": "high"})
    assert after == before + 1


def test_gpu_job_goes_to_gpu_queue(
    client: TestClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    job = submit(client, auth, hardware="gpu", priority="batch")
    assert job["pool"] == "gpu"
    assert repr([job["id"]]) in _queued_task_ids(redis_client, "gpu.batch")


def test_bearer_token_is_accepted(client: TestClient, tenant_key: tuple[str, str]) -> None:
    response = client.post("/v1/jobs", json=job_body(), headers={"Authorization": f"Bearer {tenant_key[1]}"})
    assert response.status_code == 201, response.text


def test_idempotent_replay_returns_the_same_job(client: TestClient, auth: dict[str, str]) -> None:
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    first = client.post("/v1/jobs", json=job_body(), headers={**auth, **key})
    again = client.post("/v1/jobs", json=job_body(), headers={**auth, **key})

    assert first.status_code == 201
    assert again.status_code == 200
    assert again.json()["id"] == first.json()["id"]
    assert again.headers["Location"] == first.headers["Location"]


def test_racing_requests_with_one_idempotency_key_get_one_job(
    client: TestClient, auth: dict[str, str]
) -> None:
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    with ThreadPoolExecutor(max_workers=8) as pool:
        responses = list(
            pool.map(lambda _: client.post("/v1/jobs", json=job_body(), headers={**auth, **key}), range(8))
        )

    assert sorted(r.status_code for r in responses) == [200] * 7 + [201]
    assert len({r.json()["id"] for r in responses}) == 1


def test_run_time_limit_is_stored_and_bounded_by_the_deployment(
    client: TestClient, auth: dict[str, str], api_settings: Settings
) -> None:
    job = submit(client, auth, max_run_seconds=120)
    assert job["max_run_seconds"] == 120 and job["spec"]["max_run_seconds"] == 120

    too_long = client.post(
        "/v1/jobs", json=job_body(max_run_seconds=api_settings.job_max_seconds + 1), headers=auth
    )
    assert too_long.status_code == 422
    assert [e["field"] for e in too_long.json()["errors"]] == ["max_run_seconds"]
    assert "FRAMEFLEET_JOB_MAX_SECONDS" in too_long.json()["detail"]


def test_idempotency_key_with_other_body_conflicts(client: TestClient, auth: dict[str, str]) -> None:
    key = {"Idempotency-Key": f"order-{uuid.uuid4()}"}
    assert client.post("/v1/jobs", json=job_body(), headers={**auth, **key}).status_code == 201

    response = client.post("/v1/jobs", json=job_body(priority="low"), headers={**auth, **key})

    assert response.status_code == 409
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "https://framefleet.dev/problems/idempotency-conflict"
    assert problem["status"] == 409
    assert "Idempotency-Key" in problem["detail"]


def test_idempotency_key_is_per_tenant(client: TestClient, make_key: Any) -> None:
    key = {"Idempotency-Key": "shared-key"}
    first = client.post("/v1/jobs", json=job_body(), headers={**make_key(), **key})
    other = client.post("/v1/jobs", json=job_body(priority="low"), headers={**make_key(), **key})
    assert first.status_code == other.status_code == 201
    assert first.json()["id"] != other.json()["id"]


def test_idempotency_key_longer_than_255_is_refused(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post("/v1/jobs", json=job_body(), headers={**auth, "Idempotency-Key": "k" * 256})
    assert response.status_code == 422
    assert [e["field"] for e in response.json()["errors"]] == ["Idempotency-Key"]


def _output(**fields: Any) -> dict[str, Any]:
    return {"container": "mp4", **fields}


@pytest.mark.parametrize(
    ("body", "field", "words"),
    [
        pytest.param(
            job_body(outputs=[_output(container="webm", video={"codec": "h264"})]),
            "outputs.0.video.codec",
            "webm cannot hold h264",
            id="h264-in-webm",
        ),
        pytest.param(
            job_body(outputs=[_output(video={"width": 321, "height": 240})]),
            "outputs.0.video.width",
            "even",
            id="odd-width",
        ),
        pytest.param(job_body(colour="red"), "colour", "not permitted", id="unknown-top-level-field"),
        pytest.param(
            job_body(outputs=[_output(), _output(video={"bogus": 1})]),
            "outputs.1.video.bogus",
            "not permitted",
            id="unknown-nested-field",
        ),
        pytest.param(
            job_body(outputs=[_output(container="mov", audio={"codec": "opus"})]),
            "outputs.0.audio.codec",
            "mov cannot hold opus",
            id="opus-in-mov",
        ),
        pytest.param(job_body(input="ftp://host/clip.mp4"), "input", "schemes", id="bad-uri"),
        pytest.param(job_body(input="clip.mp4"), "input", "URI", id="not-a-uri"),
        pytest.param(
            job_body(outputs=[_output(name="a"), _output(name="a")]),
            "outputs.1.name",
            "twice",
            id="same-name",
        ),
        pytest.param(job_body(outputs=[]), "outputs", "at least 1", id="no-outputs"),
        pytest.param(job_body(priority="urgent"), "priority", "live", id="bad-priority"),
        pytest.param({"outputs": [_output()]}, "input", "required", id="missing-input"),
    ],
)
def test_invalid_spec_is_422_naming_the_field(
    client: TestClient, auth: dict[str, str], body: dict[str, Any], field: str, words: str
) -> None:
    response = client.post("/v1/jobs", json=body, headers=auth)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "https://framefleet.dev/problems/validation"
    assert problem["title"] and problem["status"] == 422
    assert problem["instance"] == "/v1/jobs"
    fields = {e["field"]: e["message"] for e in problem["errors"]}
    assert field in fields, problem
    assert words.lower() in fields[field].lower()
    assert field in problem["detail"]


@pytest.mark.parametrize(
    ("content", "content_type"),
    [
        ('{"input": "file:///a.mp4", "outputs": [', "application/json"),
        ("{'input': 1}", "application/json"),
        ("", "application/json"),
        ('{"input": "file:///a.mp4"}', "text/plain"),
    ],
    ids=["truncated", "single-quotes", "empty", "not-json-content-type"],
)
def test_malformed_body_is_a_problem_not_500(
    client: TestClient, auth: dict[str, str], content: str, content_type: str
) -> None:
    response = client.post("/v1/jobs", content=content, headers={**auth, "Content-Type": content_type})
    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "https://framefleet.dev/problems/validation"
    assert problem["errors"][0]["field"] == "body"


def test_oversized_body_is_413(client: TestClient, auth: dict[str, str]) -> None:
    body = job_body(metadata={"note": "x" * (2 * 1024 * 1024)})
    response = client.post("/v1/jobs", json=body, headers=auth)
    assert response.status_code == 413
    assert response.headers["content-type"] == PROBLEM
    assert response.json()["type"] == "https://framefleet.dev/problems/payload-too-large"


def test_broker_down_still_creates_the_job(api_settings: Settings, auth: dict[str, str]) -> None:
    dead = f"redis://127.0.0.1:{services.free_port()}/0"
    app = create_app(api_settings.model_copy(update={"redis_url": dead}))
    with TestClient(app) as client:
        response = client.post("/v1/jobs", json=job_body(), headers=auth)

    assert response.status_code == 201, response.text
    job_id = response.json()["id"]
    with session_scope(api_settings.database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.state == "queued"


def test_oversized_chunked_body_is_413(client: TestClient, auth: dict[str, str]) -> None:
    chunks = iter([b'{"input": "', b"x" * 700_000, b"y" * 700_000, b'"}'])
    response = client.post("/v1/jobs", content=chunks, headers={**auth, "Content-Type": "application/json"})
    assert response.status_code == 413
    assert response.json()["type"] == "https://framefleet.dev/problems/payload-too-large"

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
        # A +json media type is JSON too: its malformed body is a 422 naming the body, not a 415.
        ('{"input": "file:///a.mp4", "outputs": [', "application/vnd.framefleet+json; charset=utf-8"),
    ],
    ids=["truncated", "single-quotes", "empty", "json-suffix-type"],
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


@pytest.mark.parametrize(
    ("content_type", "said"),
    [
        ("text/plain", "Content-Type 'text/plain'"),
        (None, "no Content-Type header"),
        ("application/x-www-form-urlencoded", "x-www-form-urlencoded"),
    ],
)
def test_a_body_that_is_not_json_is_415(
    client: TestClient, auth: dict[str, str], content_type: str | None, said: str
) -> None:
    headers = dict(auth) if content_type is None else {**auth, "Content-Type": content_type}
    response = client.post("/v1/jobs", content=json.dumps(job_body()).encode(), headers=headers)
    assert response.status_code == 415, response.text
    assert response.headers["content-type"] == PROBLEM
    problem = response.json()
    assert problem["type"] == "https://framefleet.dev/problems/unsupported-media-type"
    assert said in problem["detail"] and "application/json" in problem["detail"]


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


def _refused(response: Any, field: str) -> str:
    assert response.status_code == 422, response.text
    assert response.headers["content-type"].startswith(PROBLEM)
    errors = response.json()["errors"]
    assert [e["field"] for e in errors] == [field], errors
    return str(errors[0]["message"])


def test_a_tenant_cannot_read_or_overwrite_another_tenants_files(
    client: TestClient, make_key: Any, api_settings: Settings
) -> None:
    alpha, beta = f"a-{uuid.uuid4().hex[:8]}", f"b-{uuid.uuid4().hex[:8]}"
    a, b = make_key(tenant=alpha), make_key(tenant=beta)
    job = submit(client, a)
    media = api_settings.storage_roots[0]
    theirs = (media / "outputs" / "tenants" / alpha / job["id"] / "web.mp4").as_uri()
    mine = (media / "tenants" / beta / "in.mp4").as_uri()
    # A's output as B's input, and as B's destination: both refused, naming the field.
    message = _refused(client.post("/v1/jobs", json=job_body(input=theirs), headers=b), "input")
    assert beta in message and "outside" in message
    outputs = [{"container": "mp4", "destination": theirs}]
    _refused(
        client.post("/v1/jobs", json=job_body(input=mine, outputs=outputs), headers=b),
        "outputs.0.destination",
    )
    # The legacy flat output folder is nobody's: refused too.
    legacy = (media / "outputs" / job["id"] / "web.mp4").as_uri()
    _refused(client.post("/v1/jobs", json=job_body(input=legacy), headers=b), "input")
    # B's own folder and the shared library are fine; the library is read-only.
    assert client.post("/v1/jobs", json=job_body(input=mine), headers=b).status_code == 201
    library = [{"container": "mp4", "destination": job_body()["input"] + ".copy.mp4"}]
    message = _refused(
        client.post("/v1/jobs", json=job_body(outputs=library), headers=b), "outputs.0.destination"
    )
    assert "only read" in message


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(
            {"outputs": [{"container": "mp4", "destination": "ROOT"}]}, "outputs.0.destination", id="root"
        ),
        pytest.param(
            {"outputs": [{"container": "mp4", "destination": "AREA"}]}, "outputs.0.destination", id="area"
        ),
        pytest.param(
            {"poster": {"destination": "ROOT"}, "outputs": []}, "poster.destination", id="poster-root"
        ),
        pytest.param(
            {"outputs": [{"container": "mp4", "destination": "https://example.com/x.mp4"}]},
            "outputs.0.destination",
            id="https",
        ),
        pytest.param({"input": "s3://media-in/TENANT/../../x"}, "input", id="s3-dot-dot"),
        pytest.param({"input": "s3://media-in/TENANT/./x.mp4"}, "input", id="s3-dot"),
        pytest.param({"input": "AREA/../x.mp4"}, "input", id="file-dot-dot"),
        pytest.param({"input": "AREA/%2e%2e/x.mp4"}, "input", id="file-encoded-dot-dot"),
        pytest.param(
            {"groups": [{"type": "hls", "ladder": "mobile", "destination": "ROOT/tenants"}]},
            "groups.0.destination",
            id="group-outside",
        ),
        pytest.param(
            {"operations": {"watermark": {"uri": "file:///etc/logo.png"}}},
            "operations.watermark.uri",
            id="asset",
        ),
        pytest.param(
            {"outputs": [{"container": "mp4", "overwrite": True}]}, "outputs.0.overwrite", id="overwrite"
        ),
    ],
)
def test_locations_that_could_never_work_are_refused_at_submission(
    client: TestClient, make_key: Any, api_settings: Settings, body: dict[str, Any], field: str
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    root = api_settings.storage_roots[0]
    area = (root / "tenants" / tenant).as_uri()
    text = (
        json.dumps(body)
        .replace("ROOT", root.as_uri())
        .replace("AREA", area)
        .replace("TENANT", f"tenants/{tenant}")
    )
    _refused(
        client.post("/v1/jobs", json=job_body(**json.loads(text)), headers=make_key(tenant=tenant)), field
    )

"""Presets, templates and batch submission through the API (real Redis, real database)."""

from __future__ import annotations

import json
from typing import Any

import redis
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from framefleet.db.models import AuditEvent, Job
from framefleet.db.session import session_scope
from tests.api.conftest import job_body
from tests.conftest import library_uri


def _queued(client: redis.Redis, queue: str) -> list[str]:
    messages = [json.loads(raw) for raw in client.lrange(queue, 0, -1)]
    return [m["headers"]["argsrepr"] for m in messages if m["headers"]["task"] == "framefleet.run_job"]


def _fields(response: Any) -> list[str]:
    return [e["field"] for e in response.json()["errors"]]


def test_builtin_preset_expands_and_the_stored_spec_keeps_it(
    client: TestClient, auth: dict[str, str]
) -> None:
    body = job_body(outputs=[{"preset": "web-720p", "name": "hd", "video": {"crf": 20}}])
    response = client.post("/v1/jobs", json=body, headers=auth)
    assert response.status_code == 201, response.text
    output = response.json()["spec"]["outputs"][0]
    assert output["name"] == "hd" and output["container"] == "mp4"
    assert output["video"]["width"] == 1280 and output["video"]["crf"] == 20
    assert output["video"]["maxrate_kbps"] == 3500 and output["audio"]["bitrate_kbps"] == 128
    assert "preset" not in output


def test_unknown_preset_is_422_naming_the_output(client: TestClient, auth: dict[str, str]) -> None:
    body = job_body(outputs=[{"container": "mp4"}, {"preset": "nope", "name": "x"}])
    response = client.post("/v1/jobs", json=body, headers=auth)
    assert response.status_code == 422, response.text
    assert _fields(response) == ["outputs.1.preset"]


def test_tenant_preset_crud_history_and_audit(
    api_app: FastAPI, client: TestClient, auth: dict[str, str], make_key: Any
) -> None:
    preset = {"container": "webm", "video": {"width": 640, "height": 360, "crf": 33}}
    created = client.post("/v1/presets", json={"name": "small-webm", "output": preset}, headers=auth)
    assert created.status_code == 201, created.text
    assert (
        client.post("/v1/presets", json={"name": "web-720p", "output": preset}, headers=auth).status_code
        == 409
    )
    bad = client.post(
        "/v1/presets",
        json={"name": "bad", "output": {"container": "webm", "video": {"codec": "h264"}}},
        headers=auth,
    )
    assert bad.status_code == 422 and _fields(bad) == ["output.video.codec"]
    names = [p["name"] for p in client.get("/v1/presets", headers=auth).json()["items"]]
    assert {"web-1080p", "web-720p", "mobile-480p", "archive-hevc10", "small-webm"} <= set(names)
    # Another tenant does not see it.
    other = make_key()
    assert client.get("/v1/presets/small-webm", headers=other).status_code == 404
    job = client.post(
        "/v1/jobs", json=job_body(outputs=[{"preset": "small-webm", "name": "s"}]), headers=auth
    )
    assert job.status_code == 201, job.text
    assert job.json()["spec"]["outputs"][0]["video"]["crf"] == 33
    changed = client.patch(
        "/v1/presets/small-webm", json={"output": {**preset, "video": {"crf": 40}}}, headers=auth
    )
    assert changed.status_code == 200, changed.text
    # History is not rewritten by a later preset change.
    again = client.get(f"/v1/jobs/{job.json()['id']}", headers=auth).json()
    assert again["spec"]["outputs"][0]["video"]["crf"] == 33
    assert client.delete("/v1/presets/small-webm", headers=auth).status_code == 204
    assert client.delete("/v1/presets/web-1080p", headers=auth).status_code == 409
    api_app.state.audit_writer.flush()
    with session_scope() as session:
        actions = set(
            session.scalars(sa.select(AuditEvent.action).where(AuditEvent.target.like("%small-webm%")))
        )
    assert {"presets.create_preset", "presets.update_preset", "presets.delete_preset"} <= actions


TEMPLATE: dict[str, Any] = {
    "name": "newsroom-ingest",
    "parameters": {
        "input": {"type": "uri", "required": True},
        "title": {"type": "string", "default": "untitled"},
        "crf": {"type": "integer"},
        "urgent": {"type": "boolean", "default": False},
    },
    "spec": {
        "input": "{{input}}",
        "outputs": [
            {
                "preset": "mobile-480p",
                "name": "m",
                "video": {"crf": "{{crf}}", "constant_rate": "{{urgent}}"},
                "metadata": {"title": "News: {{title}}"},
            }
        ],
    },
}


def test_template_versions_params_and_structural_substitution(
    client: TestClient, auth: dict[str, str]
) -> None:
    created = client.post("/v1/templates", json=TEMPLATE, headers=auth)
    assert created.status_code == 201, created.text
    assert created.json()["version"] == 1
    v2 = {**TEMPLATE, "spec": {**TEMPLATE["spec"], "priority": "high"}}
    v2.pop("name")
    updated = client.put("/v1/templates/newsroom-ingest", json=v2, headers=auth)
    assert updated.status_code == 201 and updated.json()["version"] == 2
    assert [
        v["version"]
        for v in client.get("/v1/templates/newsroom-ingest/versions", headers=auth).json()["items"]
    ] == [1, 2]

    clip = library_uri("clip.mp4")
    # A value with JSON syntax stays a string inside one field: it cannot add fields.
    title = 'x", "priority": "high'
    latest = client.post(
        "/v1/jobs",
        json={"template": "newsroom-ingest", "params": {"input": clip, "title": title}},
        headers=auth,
    )
    assert latest.status_code == 201, latest.text
    spec = latest.json()["spec"]
    assert spec["priority"] == "high" and spec["input"] == clip
    assert spec["outputs"][0]["metadata"]["title"] == f"News: {title}"
    assert spec["outputs"][0]["video"]["crf"] == 26  # crf left out: the preset's value applies
    assert spec["outputs"][0]["video"]["constant_rate"] is False  # a boolean stays a boolean
    first = client.post(
        "/v1/jobs",
        json={"template": "newsroom-ingest", "version": 1, "params": {"input": clip, "crf": 30}},
        headers=auth,
    )
    assert first.status_code == 201, first.text
    assert first.json()["spec"]["priority"] == "normal"
    assert first.json()["spec"]["outputs"][0]["video"]["crf"] == 30

    for params, field in [
        ({}, "params.input"),
        ({"input": "not a uri"}, "params.input"),
        ({"input": clip, "crf": "20"}, "params.crf"),
        ({"input": clip, "crf": 99}, "params.crf"),  # typed right, refused by the spec
        ({"input": clip, "bogus": 1}, "params.bogus"),
    ]:
        response = client.post(
            "/v1/jobs", json={"template": "newsroom-ingest", "params": params}, headers=auth
        )
        assert response.status_code == 422, (params, response.text)
        assert _fields(response) == [field], params
    missing = client.post("/v1/jobs", json={"template": "newsroom-ingest", "version": 9}, headers=auth)
    assert missing.status_code == 422 and _fields(missing) == ["template"]


def test_jobs_record_their_template_and_the_list_filters_by_it(
    client: TestClient, auth: dict[str, str]
) -> None:
    assert client.post("/v1/templates", json=TEMPLATE, headers=auth).status_code == 201
    v2 = {key: value for key, value in TEMPLATE.items() if key != "name"}
    assert client.put("/v1/templates/newsroom-ingest", json=v2, headers=auth).status_code == 201
    clip = library_uri("clip.mp4")
    call: dict[str, Any] = {"template": "newsroom-ingest", "params": {"input": clip}}
    latest = client.post("/v1/jobs", json=call, headers=auth)
    assert latest.status_code == 201, latest.text
    assert latest.json()["template"] == {"name": "newsroom-ingest", "version": 2}
    batch = client.post("/v1/jobs/batch", json={"items": [{**call, "version": 1}, job_body()]}, headers=auth)
    assert batch.status_code == 200, batch.text
    from_v1, plain = (
        client.get(f"/v1/jobs/{item['job']['id']}", headers=auth).json() for item in batch.json()["items"]
    )
    assert from_v1["template"] == {"name": "newsroom-ingest", "version": 1}
    assert plain["template"] is None

    def listed(**params: str) -> list[tuple[str, Any]]:
        response = client.get("/v1/jobs", params=params, headers=auth)
        assert response.status_code == 200, response.text
        return [(job["id"], job["template"]) for job in response.json()["items"]]

    assert listed(template="newsroom-ingest") == [
        (from_v1["id"], {"name": "newsroom-ingest", "version": 1}),
        (latest.json()["id"], {"name": "newsroom-ingest", "version": 2}),
    ]
    assert listed(template="other") == []
    assert len(listed()) == 3
    too_long = client.get("/v1/jobs", params={"template": "x" * 129}, headers=auth)
    assert too_long.status_code == 422 and too_long.json()["errors"][0]["field"] == "template"


def test_a_template_must_hold_together(client: TestClient, auth: dict[str, str]) -> None:
    undeclared = {**TEMPLATE, "name": "t-undeclared", "spec": {**TEMPLATE["spec"], "input": "{{source}}"}}
    response = client.post("/v1/templates", json=undeclared, headers=auth)
    assert response.status_code == 422 and _fields(response) == ["spec"]
    broken = {**TEMPLATE, "name": "t-broken", "spec": {**TEMPLATE["spec"], "priority": "urgent"}}
    response = client.post("/v1/templates", json=broken, headers=auth)
    assert response.status_code == 422 and _fields(response) == ["spec.priority"]


def test_batch_per_item_results_one_group(
    client: TestClient, auth: dict[str, str], redis_client: redis.Redis
) -> None:
    items: list[Any] = [job_body(metadata={"n": str(i)}) for i in range(5)]
    items[2] = job_body(outputs=[{"container": "mp4", "video": {"codec": "vp8"}}])
    items[3] = {**job_body(), "idempotency_key": "item-3"}
    response = client.post("/v1/jobs/batch", json={"items": items}, headers=auth)
    assert response.status_code == 200, response.text
    results = response.json()["items"]
    assert [r["status"] for r in results] == [201, 201, 422, 201, 201]
    assert results[2]["problem"]["errors"][0]["field"] == "outputs.0.video.codec"
    ids = [r["job"]["id"] for r in results if r["status"] == 201]
    queued = _queued(redis_client, "cpu.normal")
    assert all(repr([job_id]) in queued for job_id in ids)
    # The same keyed item again is a replay, not a second job.
    again = client.post(
        "/v1/jobs/batch", json={"items": [{**job_body(), "idempotency_key": "item-3"}]}, headers=auth
    )
    assert again.json()["items"][0]["status"] == 200
    assert again.json()["items"][0]["job"]["id"] == results[3]["job"]["id"]


def test_atomic_batch_is_all_or_nothing(client: TestClient, auth: dict[str, str]) -> None:
    items = [job_body(), {"template": "nope"}, job_body(outputs=[{"preset": "zzz"}])]
    response = client.post("/v1/jobs/batch", json={"atomic": True, "items": items}, headers=auth)
    assert response.status_code == 422, response.text
    assert _fields(response) == ["items.1.template", "items.2.outputs.0.preset"]
    assert response.json()["items"] == [1, 2]
    with session_scope() as session:
        count = session.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.spec_hash.is_not(None)))
    fine = client.post(
        "/v1/jobs/batch", json={"atomic": True, "items": [job_body(), job_body()]}, headers=auth
    )
    assert fine.status_code == 201 and fine.json()["created"] == 2
    with session_scope() as session:
        after = session.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.spec_hash.is_not(None)))
    assert after == (count or 0) + 2


def test_batch_header_key_makes_a_retry_replay(client: TestClient, auth: dict[str, str]) -> None:
    body = {"items": [job_body(), job_body(priority="high")]}
    first = client.post("/v1/jobs/batch", json=body, headers={**auth, "Idempotency-Key": "day-1"})
    second = client.post("/v1/jobs/batch", json=body, headers={**auth, "Idempotency-Key": "day-1"})
    assert [r["status"] for r in first.json()["items"]] == [201, 201]
    assert [r["status"] for r in second.json()["items"]] == [200, 200]
    assert [r["job"]["id"] for r in first.json()["items"]] == [r["job"]["id"] for r in second.json()["items"]]


def test_batch_limit(client: TestClient, auth: dict[str, str]) -> None:
    response = client.post("/v1/jobs/batch", json={"items": [job_body()] * 1001}, headers=auth)
    assert response.status_code == 422 and _fields(response) == ["items"]

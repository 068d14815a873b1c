"""Workflow runs through the API and the beat's dependency sweep: a DAG of steps submitted as one unit
(step names turned into job ids), refused whole with a 422 naming the step for an unknown reference or a
cycle, one derived status, a list, and a cancel that cascades to every step."""

from __future__ import annotations

import uuid
from typing import Any

import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from framefleet.config import Settings
from framefleet.db.models import AuditEvent, Job, Workflow
from framefleet.db.session import session_scope
from framefleet.workflows import dependencies
from tests.api.conftest import KeyMaker, job_body, move_job


def chain() -> dict[str, Any]:
    return {
        "name": "ingest",
        "steps": [
            {"name": "transcode", "spec": job_body()},
            {"name": "poster", "spec": {"input": {"from": "transcode", "output": "web"}, "poster": {}}},
            {"name": "notify", "spec": job_body(depends_on=[{"job": "poster", "condition": "finished"}])},
        ],
    }


def _counts() -> tuple[int, int]:
    with session_scope() as session:
        return (
            session.scalar(sa.select(sa.func.count()).select_from(Job)) or 0,
            session.scalar(sa.select(sa.func.count()).select_from(Workflow)) or 0,
        )


def test_a_workflow_is_one_unit_whose_steps_wait_for_each_other(
    client: TestClient, make_key: KeyMaker, api_settings: Settings
) -> None:
    headers = make_key(role="member")
    created = client.post("/v1/workflows", json=chain(), headers=headers)
    assert created.status_code == 201, created.text
    run = created.json()
    assert created.headers["Location"] == f"/v1/workflows/{run['id']}"
    assert run["status"] == "queued" and [s["name"] for s in run["steps"]] == [
        "transcode",
        "poster",
        "notify",
    ]
    transcode, poster, notify = (step["job_id"] for step in run["steps"])
    assert [s["state"] for s in run["steps"]] == ["queued", "pending", "pending"]
    # Each step is a job like any other: its spec names its parents by job id.
    poster_job = client.get(f"/v1/jobs/{poster}", headers=headers).json()
    assert poster_job["spec"]["input"] == {"from": transcode, "output": "web"}
    assert poster_job["spec"]["depends_on"] == [{"job": transcode, "condition": "succeeded"}]
    notify_job = client.get(f"/v1/jobs/{notify}", headers=headers).json()
    assert notify_job["spec"]["depends_on"] == [{"job": poster, "condition": "finished"}]

    # The run's status follows its jobs; the dependency sweep cancels what can no longer run.
    move_job(api_settings.database_url, transcode, "running")
    assert client.get(f"/v1/workflows/{run['id']}", headers=headers).json()["status"] == "running"
    move_job(api_settings.database_url, transcode, "failed")
    dependencies.sweep(api_settings)
    after = client.get(f"/v1/workflows/{run['id']}", headers=headers).json()
    assert [s["state"] for s in after["steps"]] == ["failed", "canceled", "queued"]
    assert after["steps"][1]["error"] == f"parent failed: {transcode} ended failed, needed succeeded"
    assert after["status"] == "running"

    listed = client.get("/v1/workflows", headers=headers).json()
    assert [item["id"] for item in listed["items"]] == [run["id"]] and listed["next_cursor"] is None
    # Another tenant sees nothing of it.
    other = make_key()
    assert client.get(f"/v1/workflows/{run['id']}", headers=other).status_code == 404
    assert client.get("/v1/workflows", headers=other).json()["items"] == []
    with session_scope() as session:
        actions = set(
            session.scalars(sa.select(AuditEvent.action).where(AuditEvent.target.like("%" + run["id"])))
        )
    assert actions == {"workflows.submit_workflow"}


def test_unknown_steps_and_cycles_are_refused_whole_naming_the_step(
    client: TestClient, make_key: KeyMaker
) -> None:
    headers = make_key()
    before = _counts()
    body = chain()
    body["steps"][2]["spec"]["depends_on"] = ["postre"]
    unknown = client.post("/v1/workflows", json=body, headers=headers)
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["errors"][0]["field"] == "steps.2.spec.depends_on.0"
    assert "no step named 'postre'" in unknown.json()["detail"]

    body = chain()
    body["steps"][0]["spec"]["depends_on"] = ["notify"]
    cycle = client.post("/v1/workflows", json=body, headers=headers)
    assert cycle.status_code == 422, cycle.text
    assert cycle.headers["content-type"] == "application/problem+json"
    assert cycle.json()["errors"][0]["field"] == "steps.0.spec.depends_on"
    assert "transcode → notify → poster → transcode" in cycle.json()["detail"]

    # A step's own spec error is named from the request's root, and nothing of the run is written.
    body = chain()
    body["steps"][1]["spec"]["poster"] = {"format": "gif"}
    bad = client.post("/v1/workflows", json=body, headers=headers)
    assert bad.status_code == 422, bad.text
    assert bad.json()["errors"][0]["field"].startswith("steps.1.spec.poster")
    # A parent outside the run must be a job of the tenant.
    body = chain()
    body["steps"][0]["spec"]["depends_on"] = [str(uuid.uuid4())]
    outside = client.post("/v1/workflows", json=body, headers=headers)
    assert outside.status_code == 422 and outside.json()["errors"][0]["field"] == "steps.0.spec.depends_on.0"
    assert _counts() == before


def test_cancel_cascades_to_every_step_that_has_not_ended(
    client: TestClient, make_key: KeyMaker, api_settings: Settings, redis_client: redis.Redis
) -> None:
    headers = make_key(role="member")
    run = client.post("/v1/workflows", json=chain(), headers=headers).json()
    transcode = run["steps"][0]["job_id"]
    move_job(api_settings.database_url, transcode, "running")
    canceled = client.post(f"/v1/workflows/{run['id']}/cancel", headers=headers)
    # The running step is being stopped by its worker; the waiting ones are canceled at once.
    assert canceled.status_code == 202, canceled.text
    steps = canceled.json()["steps"]
    assert [s["state"] for s in steps] == ["running", "canceled", "canceled"]
    assert redis_client.get(f"framefleet:job:{transcode}:cancel") == "1"
    history = client.get(f"/v1/jobs/{steps[1]['job_id']}/history", headers=headers).json()["items"]
    assert history[-1]["reason"] == "workflow canceled"
    move_job(api_settings.database_url, transcode, "canceled")
    ended = client.get(f"/v1/workflows/{run['id']}", headers=headers).json()
    assert ended["status"] == "canceled"
    again = client.post(f"/v1/workflows/{run['id']}/cancel", headers=headers)
    assert again.status_code == 409 and again.json()["workflow_status"] == "canceled"
    # A viewer may read a run but neither submit nor cancel one.
    viewer = make_key(role="viewer")
    assert client.post("/v1/workflows", json=chain(), headers=viewer).status_code == 403

"""Job dependencies through the API and the beat's sweep: parents checked at submission, dependants wait in
`pending`, are released with the parent's output as input, or canceled when a parent failed (cascading)."""

from __future__ import annotations

import uuid
from typing import Any

import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from framefleet.config import Settings
from framefleet.db.models import JobOutput
from framefleet.db.session import session_scope
from framefleet.scheduling import broker
from framefleet.workflows import dependencies
from tests.api.conftest import KeyMaker, job_body, move_job, submit


def _get(client: TestClient, headers: dict[str, str], job_id: str) -> dict[str, Any]:
    view: dict[str, Any] = client.get(f"/v1/jobs/{job_id}", headers=headers).json()
    return view


def _history(client: TestClient, headers: dict[str, str], job_id: str) -> list[str]:
    items = client.get(f"/v1/jobs/{job_id}/history", headers=headers).json()["items"]
    return [item["reason"] for item in items]


def test_unknown_or_foreign_parents_are_422_naming_the_entry(client: TestClient, make_key: KeyMaker) -> None:
    mine, theirs = make_key(), make_key()
    parent = submit(client, mine)
    foreign = submit(client, theirs)
    for parents in ([parent["id"], foreign["id"]], [parent["id"], str(uuid.uuid4())]):
        response = client.post(
            "/v1/jobs",
            json=job_body(depends_on=parents),
            headers=mine,
        )
        assert response.status_code == 422, response.text
        assert response.json()["errors"][0]["field"] == "depends_on.1", response.text
    bad = client.post(
        "/v1/jobs",
        json={"input": "file:///x.mp4", "depends_on": ["nope"], "outputs": [{"container": "mp4"}]},
        headers=mine,
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "depends_on.0.job"


def test_a_dependant_waits_then_runs_on_its_parents_output(
    client: TestClient, make_key: KeyMaker, api_settings: Settings, redis_client: redis.Redis
) -> None:
    headers = make_key()
    parent = submit(client, headers)
    child = submit(client, headers, input={"from": parent["id"], "output": "web"}, depends_on=[parent["id"]])
    assert (child["state"], child["pending_reason"]) == ("pending", "dependencies")
    assert _history(client, headers, child["id"]) == [f"submitted; waits for parents {parent['id']}"]
    # Nothing to do while the parent runs; no message was published for the child.
    move_job(api_settings.database_url, parent["id"], "running")
    assert dependencies.sweep(api_settings) == {"released": 0, "canceled": 0}
    assert child["id"] not in broker.snapshot(redis_client, delivered_within=0).waiting

    uri = "file:///somewhere/tenant/web.mp4"
    with session_scope() as session:
        session.add(JobOutput(job_id=parent["id"], name="web", uri=uri, container="mp4", size_bytes=1))
    move_job(api_settings.database_url, parent["id"], "succeeded")
    assert dependencies.sweep(api_settings) == {"released": 1, "canceled": 0}
    released = _get(client, headers, child["id"])
    assert (released["state"], released["pending_reason"]) == ("queued", None)
    assert released["spec"]["input"] == uri  # the reference resolved for the worker
    assert child["id"] in broker.snapshot(redis_client, delivered_within=0).waiting


def test_a_failed_parent_cancels_its_dependants_down_the_chain(
    client: TestClient, make_key: KeyMaker, api_settings: Settings
) -> None:
    headers = make_key()
    parent = submit(client, headers)
    child = submit(client, headers, depends_on=[parent["id"]])
    grandchild = submit(client, headers, depends_on=[child["id"]])
    on_failure = submit(client, headers, depends_on=[{"job": parent["id"], "condition": "failed"}])
    move_job(api_settings.database_url, parent["id"], "running", "failed")
    assert dependencies.sweep(api_settings) == {"released": 1, "canceled": 2}
    for job in (child, grandchild):
        ended = _get(client, headers, job["id"])
        assert ended["state"] == "canceled" and ended["error"].startswith("parent failed"), ended
    assert _get(client, headers, on_failure["id"])["state"] == "queued"
    # A canceled dependant is not revived by a later sweep.
    assert dependencies.sweep(api_settings) == {"released": 0, "canceled": 0}
    with session_scope() as session:
        edges = session.execute(
            sa.text("select count(*) from job_dependencies where job_id = :j"), {"j": child["id"]}
        )
        assert edges.scalar() == 1

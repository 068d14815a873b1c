"""Workflow runs with a real worker and the beat's loop: a three-step DAG (transcode → package the
transcode's output → poster of the package) runs to success, followed through one event stream; a run
whose first step fails ends its dependants `canceled` with the reason, and the run `failed`."""

from __future__ import annotations

import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from framefleet.db.session import session_scope
from framefleet.keys import create_key
from tests.api.conftest import parse_sse
from tests.integration.test_dependencies import ENDED, SMALL, beat  # noqa: F401  (the beat fixture)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(300)]


def _events(api: TestClient, run_id: str, headers: dict[str, str]) -> list[dict[str, Any]]:
    with api.stream("GET", f"/v1/workflows/{run_id}/events", headers=headers) as response:
        assert response.status_code == 200
        text = "".join(response.iter_text())
    return [
        {"id": m.get("id"), "event": m["event"], "data": json.loads(m["data"])}
        for m in parse_sse(text)
        if "event" in m
    ]


def _by_step(events: list[dict[str, Any]]) -> dict[str, list[tuple[str, Any]]]:
    """Each step's events in order, as (type, data) pairs."""
    steps: dict[str, list[tuple[str, Any]]] = {}
    for event in events:
        steps.setdefault(event["data"]["step"], []).append((event["event"], event["data"]))
    return steps


@pytest.mark.usefixtures("beat")
def test_a_dag_runs_to_success_in_one_stream_and_a_failed_step_cancels_its_dependants(
    api: TestClient, clip: Path, worker: Any
) -> None:
    with session_scope() as session:
        key, _ = create_key(session, tenant=f"wf-{uuid.uuid4().hex[:8]}", role="member")
    headers = {"X-API-Key": key}
    body = {
        "name": "ingest",
        "steps": [
            {
                "name": "transcode",
                "spec": {
                    "input": clip.as_uri(),
                    "outputs": [{"name": "hd", "container": "mp4", "video": SMALL}],
                },
            },
            {
                "name": "package",
                "spec": {
                    "input": {"from": "transcode", "output": "hd"},
                    "outputs": [{"name": "pkg", "container": "mkv", "video": SMALL}],
                },
            },
            {"name": "poster", "spec": {"input": {"from": "package", "output": "pkg"}, "poster": {}}},
        ],
    }
    created = api.post("/v1/workflows", json=body, headers=headers)
    assert created.status_code == 201, created.text
    run_id = created.json()["id"]

    # Followed live from submission to the end: one stream, every step's events tagged with its step.
    events = _events(api, run_id, headers)
    assert events[-1]["event"] == "done"
    assert events[-1]["data"]["status"] == "succeeded"
    assert events[-1]["data"]["steps"] == {
        "transcode": "succeeded",
        "package": "succeeded",
        "poster": "succeeded",
    }
    finished = [e["data"]["step"] for e in events if e["event"] == "step.done"]
    assert finished == ["transcode", "package", "poster"]
    outputs = [(e["data"]["step"], e["data"]["name"]) for e in events if e["event"] == "output"]
    assert outputs == [("transcode", "hd"), ("package", "pkg"), ("poster", "poster")], outputs
    # Resuming from an id replays exactly what came after it, each step's events in their order (steps
    # replay side by side, so how they interleave may differ from the live stream's).
    middle = len(events) // 2
    resumed = _events(api, run_id, {**headers, "Last-Event-ID": events[middle]["id"]})
    assert resumed[-1]["event"] == "done" and resumed[-1]["data"] == events[-1]["data"]
    assert _by_step(resumed[:-1]) == _by_step(events[middle + 1 : -1])

    view = api.get(f"/v1/workflows/{run_id}", headers=headers).json()
    assert view["status"] == "succeeded"
    jobs = {s["name"]: api.get(f"/v1/jobs/{s['job_id']}", headers=headers).json() for s in view["steps"]}
    assert jobs["package"]["spec"]["input"] == jobs["transcode"]["outputs"][0]["uri"]
    assert jobs["poster"]["spec"]["input"] == jobs["package"]["outputs"][0]["uri"]
    assert jobs["transcode"]["finished_at"] <= jobs["package"]["started_at"]

    # The first step fails (its input is missing): the steps that needed it are canceled, with the reason.
    body["steps"][0]["spec"]["input"] = clip.as_uri() + ".missing"
    broken = api.post("/v1/workflows", json=body, headers=headers).json()
    deadline = time.monotonic() + 60
    while (ended := api.get(f"/v1/workflows/{broken['id']}", headers=headers).json())["status"] not in ENDED:
        assert time.monotonic() < deadline, ended
        time.sleep(0.2)
    assert ended["status"] == "failed"
    steps = {s["name"]: s for s in ended["steps"]}
    assert steps["transcode"]["state"] == "failed"
    first = steps["transcode"]["job_id"]
    assert steps["package"]["state"] == "canceled"
    assert steps["package"]["error"] == f"parent failed: {first} ended failed, needed succeeded"
    assert steps["poster"]["state"] == "canceled"
    assert steps["poster"]["error"].startswith(f"parent failed: {steps['package']['job_id']} ended canceled")

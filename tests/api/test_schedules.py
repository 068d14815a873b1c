"""Cron schedules through the API, and their fires by the beat: each fire recorded once (also when a
second beat fires the same time after a failover), a missed fire run once or skipped, a real beat loop."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import timedelta
from typing import Any

import redis
import sqlalchemy as sa
from fastapi.testclient import TestClient

from framefleet.celery_app import celery_for
from framefleet.config import Settings
from framefleet.db.models import Job, Schedule, ScheduleFire
from framefleet.db.session import session_scope
from framefleet.redis_client import get_redis
from framefleet.scheduling import broker
from framefleet.scheduling.maintenance import LeaderLock, Maintenance
from framefleet.workflows import schedules
from tests.api.conftest import KeyMaker, job_body


def _create(client: TestClient, headers: dict[str, str], **overrides: Any) -> dict[str, Any]:
    body = {"name": f"s-{uuid.uuid4().hex[:6]}", "cron": "*/5 * * * *", "spec": job_body(), **overrides}
    response = client.post("/v1/schedules", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def _set_next(schedule_id: int, delta: timedelta) -> Any:
    """Move the schedule's next fire to `delta` from now (the past: it is due); the new time."""
    with session_scope() as session:
        row = session.get(Schedule, schedule_id)
        assert row is not None
        row.next_run_at = row.created_at + delta if delta.total_seconds() > 0 else schedules.utcnow() + delta
        return row.next_run_at


def _fires(schedule_id: int) -> list[ScheduleFire]:
    with session_scope() as session:
        rows = session.scalars(sa.select(ScheduleFire).where(ScheduleFire.schedule_id == schedule_id)).all()
        session.expunge_all()
        return list(rows)


def test_crud_next_times_and_field_errors(client: TestClient, make_key: KeyMaker) -> None:
    headers, other = make_key(), make_key()
    created = _create(client, headers, cron="0 9 * * 1-5", timezone="Europe/Paris")
    assert created["enabled"] and created["catch_up"] == "once"
    assert len(created["upcoming"]) == 5 and created["upcoming"][0] == created["next_run_at"]
    path = f"/v1/schedules/{created['id']}"
    assert client.get(path, headers=other).status_code == 404
    assert [s["id"] for s in client.get("/v1/schedules", headers=headers).json()["items"]] == [created["id"]]
    off = client.patch(path, json={"enabled": False}, headers=headers).json()
    assert (off["enabled"], off["next_run_at"], off["upcoming"]) == (False, None, [])
    on = client.patch(path, json={"enabled": True, "catch_up": "skip"}, headers=headers).json()
    assert on["next_run_at"] is not None and on["catch_up"] == "skip"
    for body, field in [
        ({"cron": "every day"}, "cron"),
        ({"timezone": "Mars/Olympus"}, "timezone"),
        ({"spec": {**job_body(), "outputs": [{"container": "nope"}]}}, "spec.outputs.0.container"),
        ({"spec": job_body(depends_on=[str(uuid.uuid4())])}, "spec.depends_on"),
        ({"spec": job_body(input="file:///etc/passwd")}, "spec.input"),
    ]:
        response = client.post(
            "/v1/schedules",
            json={"name": "bad", "cron": "* * * * *", "spec": job_body(), **body},
            headers=headers,
        )
        assert response.status_code == 422, (body, response.text)
        assert response.json()["errors"][0]["field"] == field, response.text
    duplicate = client.post(
        "/v1/schedules",
        json={"name": created["name"], "cron": "* * * * *", "spec": job_body()},
        headers=headers,
    )
    assert duplicate.status_code == 422 and duplicate.json()["errors"][0]["field"] == "name"
    assert client.delete(path, headers=headers).status_code == 204
    assert client.get(path, headers=headers).status_code == 404


def test_each_fire_is_recorded_once_even_when_a_second_beat_fires_it(
    client: TestClient, make_key: KeyMaker, api_settings: Settings, redis_client: redis.Redis
) -> None:
    headers = make_key()
    created = _create(client, headers)
    due = _set_next(created["id"], timedelta(seconds=-1))
    # Other tests' schedules (a `* * * * *` one past a minute's turn) may be due too: count this tenant's.
    def tenant_jobs() -> list[str]:
        return [j["id"] for j in client.get("/v1/jobs", headers=headers).json()["items"]]

    fired = schedules.fire_due(api_settings)
    made = tenant_jobs()
    assert len(made) == 1 and made[0] in fired
    schedules.fire_due(api_settings)
    assert tenant_jobs() == made  # moved on: nothing due
    # A beat that read the schedule before the fire moved it (a failover): the unique fire row stops it.
    with session_scope() as session:
        session.execute(sa.update(Schedule).where(Schedule.id == created["id"]).values(next_run_at=due))
    schedules.fire_due(api_settings, now=due + timedelta(seconds=1))
    assert tenant_jobs() == made
    # ... and the schedule still moved on rather than trying the same fire at every tick.
    assert (
        client.get(f"/v1/schedules/{created['id']}", headers=headers).json()["next_run_at"] > due.isoformat()
    )
    fires = _fires(created["id"])
    assert [(f.fire_at, f.job_id) for f in fires] == [(due, made[0])]
    job = client.get(f"/v1/jobs/{made[0]}", headers=headers).json()
    assert job["state"] == "queued" and job["spec"]["input"] == job_body()["input"]
    assert made[0] in broker.snapshot(redis_client, delivered_within=0).waiting
    listed = client.get(f"/v1/schedules/{created['id']}/fires", headers=headers).json()["items"]
    assert [f["job_id"] for f in listed] == made


def test_a_fire_missed_in_an_outage_runs_once_or_is_skipped(
    client: TestClient, make_key: KeyMaker, api_settings: Settings
) -> None:
    headers = make_key()
    once = _create(client, headers, cron="0 * * * *")
    skip = _create(client, headers, cron="0 * * * *", catch_up="skip")
    # A fake clock half past an hour; the beat was down for three hours, three fires were missed.
    now = schedules.utcnow().replace(minute=30, second=0, microsecond=0) + timedelta(days=1)
    with session_scope() as session:
        session.execute(
            sa.update(Schedule)
            .where(Schedule.id.in_([once["id"], skip["id"]]))
            .values(next_run_at=now - timedelta(hours=3, minutes=30))
        )
    # (Other tests' schedules are due on this clock too: only these two are looked at.)
    made = schedules.fire_due(api_settings, now=now)
    fires = _fires(once["id"])
    assert [f.fire_at for f in fires] == [now - timedelta(minutes=30)] and fires[0].job_id in made
    assert _fires(skip["id"]) == []
    for schedule in (once, skip):
        view = client.get(f"/v1/schedules/{schedule['id']}", headers=headers).json()
        assert view["next_run_at"] == (now + timedelta(minutes=30)).isoformat()


def test_the_beat_leader_fires_a_due_schedule(client: TestClient, make_key: KeyMaker, test_env: Any) -> None:
    headers = make_key()
    created = _create(client, headers)
    _set_next(created["id"], timedelta(seconds=-1))
    settings = Settings()
    loop = Maintenance(
        settings,
        celery=celery_for(settings),
        lock=LeaderLock(get_redis, settings.beat_leader_ttl_seconds, identity=f"t-{uuid.uuid4().hex[:6]}"),
    )
    stop = threading.Event()
    thread = threading.Thread(target=loop.run_forever, args=(stop,), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not _fires(created["id"]):
            time.sleep(0.1)
    finally:
        stop.set()
        thread.join(5)
    fires = _fires(created["id"])
    assert len(fires) == 1 and fires[0].job_id is not None
    with session_scope() as session:
        assert session.get(Job, fires[0].job_id) is not None


def test_a_schedule_submits_from_a_template_with_params_resolved_at_each_fire(
    client: TestClient, make_key: KeyMaker, api_settings: Settings
) -> None:
    headers = make_key()
    name = f"t-{uuid.uuid4().hex[:6]}"
    template = {
        "name": name,
        "parameters": {"input": {"type": "uri", "required": True}, "crf": {"type": "integer", "default": 30}},
        "spec": {
            "input": "{{input}}",
            "outputs": [{"name": "web", "container": "mp4", "video": {"crf": "{{crf}}"}}],
        },
    }
    assert client.post("/v1/templates", json=template, headers=headers).status_code == 201
    created = _create(
        client, headers, spec=None, template={"name": name, "params": {"input": job_body()["input"]}}
    )
    assert created["spec"] is None
    assert created["template"] == {"name": name, "version": None, "params": {"input": job_body()["input"]}}
    # Parameters are checked when the schedule is made, named from the body's root.
    for call, field in [
        ({"name": name, "params": {"input": job_body()["input"], "crf": "high"}}, "template.params.crf"),
        ({"name": name, "params": {}}, "template.params.input"),
        ({"name": "nope", "params": {}}, "template.template"),
    ]:
        refused = client.post(
            "/v1/schedules", json={"name": "bad", "cron": "* * * * *", "template": call}, headers=headers
        )
        assert refused.status_code == 422, refused.text
        assert refused.json()["errors"][0]["field"] == field, refused.text
    both = client.post(
        "/v1/schedules",
        json={"name": "bad", "cron": "* * * * *", "spec": job_body(), "template": {"name": name}},
        headers=headers,
    )
    assert both.status_code == 422 and both.json()["errors"][0]["field"] == "template"

    # A new version of the template is what the next fire uses (no version pinned).
    template["spec"]["outputs"][0]["video"]["width"] = 320
    new_version = {key: value for key, value in template.items() if key != "name"}
    updated = client.put(f"/v1/templates/{name}", json=new_version, headers=headers)
    assert updated.status_code in (200, 201), updated.text
    _set_next(created["id"], timedelta(seconds=-1))
    made = schedules.fire_due(api_settings)
    assert len(made) == 1
    job = client.get(f"/v1/jobs/{made[0]}", headers=headers).json()
    assert job["spec"]["input"] == job_body()["input"]
    assert (
        job["spec"]["outputs"][0]["video"]["crf"] == 30 and job["spec"]["outputs"][0]["video"]["width"] == 320
    )

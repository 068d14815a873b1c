"""Tenant quotas on the real database: max_queued_jobs refuses a submission (429 quota-exceeded naming the
quota, usage and limit); max_running_jobs holds claimed jobs in `pending` and releases them oldest first,
one per free slot."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient

from framefleet.config import Settings
from framefleet.db.models import Job, JobOutput
from framefleet.db.session import session_scope
from framefleet.lifecycle import ledger
from framefleet.tenancy import quotas, usage
from tests.api.conftest import KeyMaker, job_body, move_job, submit


def _tenant(client: TestClient, make_key: KeyMaker, limits: dict[str, Any]) -> tuple[str, dict[str, str]]:
    name = f"q-{uuid.uuid4().hex[:8]}"
    created = client.post(
        "/v1/tenants", json={"name": name, "settings": {"quotas": limits}}, headers=make_key()
    )
    assert created.status_code == 201, created.text
    return name, make_key(tenant=name, role="member")


def test_a_submission_over_max_queued_jobs_is_refused_naming_the_quota(
    client: TestClient, make_key: KeyMaker, api_settings: Settings
) -> None:
    _, member = _tenant(client, make_key, {"max_queued_jobs": 2})
    first = submit(client, member)
    submit(client, member)
    refused = client.post("/v1/jobs", json=job_body(), headers=member)
    assert refused.status_code == 429, refused.text
    problem = refused.json()
    assert problem["type"].endswith("/quota-exceeded")
    assert (problem["quota"], problem["usage"], problem["limit"]) == ("max_queued_jobs", 2, 2)
    assert int(refused.headers["Retry-After"]) >= 1
    # A job that starts no longer waits: the next submission fits.
    move_job(api_settings.database_url, first["id"], "running")
    submit(client, member)


def test_malformed_quotas_are_refused(client: TestClient, make_key: KeyMaker) -> None:
    bad = {"quotas": {"max_running_jobs": -1}}
    answer = client.post(
        "/v1/tenants", json={"name": f"q-{uuid.uuid4().hex[:6]}", "settings": bad}, headers=make_key()
    )
    assert answer.status_code == 422
    assert "settings.quotas.max_running_jobs" in answer.text
    with pytest.raises(ValueError, match="may hold"):
        quotas.quotas_of({"quotas": {"max_gpus": 1}})
    weightless = {"fair_share": {"weight": 0}}
    answer = client.post(
        "/v1/tenants", json={"name": f"q-{uuid.uuid4().hex[:6]}", "settings": weightless}, headers=make_key()
    )
    assert answer.status_code == 422 and "settings.fair_share.weight" in answer.text


def test_running_quota_holds_jobs_and_releases_them_in_submission_order(
    client: TestClient, make_key: KeyMaker, api_settings: Settings
) -> None:
    _, member = _tenant(client, make_key, {"max_running_jobs": 1})
    ids = [submit(client, member)["id"] for _ in range(4)]
    limit = quotas.Quotas(max_running_jobs=1)
    move_job(api_settings.database_url, ids[0], "running")
    with session_scope(api_settings.database_url) as session:
        for job_id in ids[1:]:
            job = session.get(Job, job_id)
            assert job is not None
            held = quotas.hold_if_full(session, job=job, tenant="t", quotas=limit, worker="w")
            assert held is not None and held.pending_reason == quotas.QUOTA_RUNNING
        tenant_id = job.tenant_id
    with session_scope(api_settings.database_url) as session:
        assert quotas.release_held(session, tenant_id=tenant_id, quotas=limit) == []  # no slot free yet
    move_job(api_settings.database_url, ids[0], "succeeded")
    released = quotas.release_and_dispatch(tenant_id=tenant_id, settings=api_settings)
    assert released == 1
    with session_scope(api_settings.database_url) as session:
        states = {
            job_id: (job.state, job.pending_reason) for job_id in ids if (job := session.get(Job, job_id))
        }
    # Only the oldest held job goes: one slot came free.
    assert states[ids[1]] == ("queued", None)
    assert states[ids[2]] == states[ids[3]] == ("pending", quotas.QUOTA_RUNNING)
    # Held jobs are never lost: the view shows why they wait.
    view = client.get(f"/v1/jobs/{ids[2]}", headers=member).json()
    assert (view["state"], view["pending_reason"]) == ("pending", "quota-running")
    # The beat's sweep releases as a worker's ending would: nothing while the slot is taken, then one.
    move_job(api_settings.database_url, ids[1], "running")
    assert quotas.sweep(api_settings) == 0
    move_job(api_settings.database_url, ids[1], "failed")
    assert quotas.sweep(api_settings) == 1
    assert client.get(f"/v1/jobs/{ids[2]}", headers=member).json()["state"] == "queued"


def _succeed_with_outputs(database_url: str, job_id: str, *sizes_and_seconds: tuple[int, float]) -> None:
    """Finish a job as the worker does: outputs recorded and counted with the success."""
    move_job(database_url, job_id, "running", "succeeded")
    with session_scope(database_url) as session:
        job = session.get(Job, job_id)
        assert job is not None and job.finished_at is not None
        rows = [
            JobOutput(
                job_id=job_id,
                name=f"o{i}",
                uri=f"file:///x/{i}",
                container="mp4",
                size_bytes=size,
                duration_seconds=seconds,
            )
            for i, (size, seconds) in enumerate(sizes_and_seconds)
        ]
        session.add_all(rows)
        usage.record_success(session, tenant_id=job.tenant_id, outputs=rows, at=job.finished_at)
        objects = [ledger.Object(row.uri, row.size_bytes) for row in rows]
        ledger.record_published(session, tenant_id=job.tenant_id, job_id=job_id, objects=objects)


def test_usage_counts_succeeded_jobs_and_the_media_and_output_quotas_refuse(
    client: TestClient, make_key: KeyMaker, api_settings: Settings
) -> None:
    name, member = _tenant(client, make_key, {"media_minutes_per_month": 3, "output_bytes": 10_000})
    first, second = submit(client, member)["id"], submit(client, member)["id"]
    _succeed_with_outputs(api_settings.database_url, first, (1000, 60.0), (500, 60.0))
    _succeed_with_outputs(api_settings.database_url, second, (2000, 90.0))
    own = client.get("/v1/usage", headers=member)
    assert own.status_code == 200, own.text
    view = own.json()
    assert view["tenant"] == name
    assert view["quotas"]["media_minutes_per_month"] == {"usage": 2.5, "limit": 3}
    assert view["quotas"]["output_bytes"] == {"usage": 3500, "limit": 10_000}
    assert view["quotas"]["max_running_jobs"] == {"usage": 0, "limit": None}
    assert view["periods"] == [
        {"period": view["period"], "jobs_succeeded": 2, "media_minutes": 2.5, "output_bytes": 3500}
    ]
    # The admin route shows the same; it is the installation's (tenants:read).
    assert client.get(f"/v1/tenants/{name}/usage", headers=make_key()).json() == view
    assert client.get(f"/v1/tenants/{name}/usage", headers=member).status_code == 403
    # Counters recomputed from the rows agree with those counted on the way.
    with session_scope(api_settings.database_url) as session:
        tenant_id = session.get(Job, first).tenant_id  # type: ignore[union-attr]
        assert usage.reconcile(session, tenant_id=tenant_id) == 1
    assert client.get("/v1/usage", headers=member).json() == view
    # Still under 3 minutes: one more fits; at 3 the month's quota is spent.
    third = submit(client, member)["id"]
    _succeed_with_outputs(api_settings.database_url, third, (100, 30.0))
    refused = client.post("/v1/jobs", json=job_body(), headers=member)
    assert refused.status_code == 429, refused.text
    assert (refused.json()["quota"], refused.json()["usage"], refused.json()["limit"]) == (
        "media_minutes_per_month",
        3.0,
        3,
    )
    # Output bytes stored: raising the media quota leaves the byte quota to refuse.
    limits = {"quotas": {"output_bytes": 3600}}
    assert (
        client.patch(f"/v1/tenants/{name}", json={"settings": limits}, headers=make_key()).status_code == 200
    )
    member = make_key(tenant=name, role="member")  # a fresh key: no cached principal with the old quotas
    refused = client.post("/v1/jobs", json=job_body(), headers=member)
    assert refused.json()["quota"] == "output_bytes" and refused.json()["usage"] == 3600


def test_usage_per_day_sums_the_ended_jobs_costs_and_failures_are_counted_by_class(
    client: TestClient, make_key: KeyMaker, api_settings: Settings
) -> None:
    name, member = _tenant(client, make_key, {})
    done, broken, waiting = (submit(client, member)["id"] for _ in range(3))
    move_job(api_settings.database_url, done, "running", "succeeded")
    move_job(api_settings.database_url, broken, "running", "failed")
    cost = {"amount": 0.25, "currency": "EUR"}
    record = {"cpu_seconds": 1800.0, "gpu_seconds": 0.0, "joules": 360_000.0, "cost": cost}
    with session_scope(api_settings.database_url) as session:
        for job_id in (done, broken, waiting):
            row = session.get(Job, job_id)
            assert row is not None
            row.usage = record
        session.get(Job, broken).failure_class = "encoder_failed"  # type: ignore[union-attr]
    days = client.get("/v1/usage/days?days=7", headers=member)
    assert days.status_code == 200, days.text
    # The queued job has not ended: only the succeeded and the failed one count, both today.
    assert days.json()["items"] == [
        {
            "day": days.json()["items"][0]["day"],
            "jobs": 2,
            "succeeded": 1,
            "cpu_hours": 1.0,
            "gpu_hours": 0.0,
            "kwh": 0.2,
            "cost": [{"currency": "EUR", "amount": 0.5}],
        }
    ]
    _, stranger = _tenant(client, make_key, {})
    assert client.get("/v1/usage/days", headers=stranger).json()["items"] == []
    assert client.get("/v1/usage/days?days=0", headers=member).status_code == 422
    # Failures by class: every tenant's, for operators and admins only.
    failures = client.get("/v1/failures?hours=1", headers=make_key(tenant=name, role="operator"))
    assert failures.status_code == 200, failures.text
    assert any(c["failure_class"] == "encoder_failed" and c["count"] >= 1 for c in failures.json()["classes"])
    assert any(f["job_id"] == broken and f["tenant"] == name for f in failures.json()["recent"])
    assert client.get("/v1/failures", headers=member).status_code == 403

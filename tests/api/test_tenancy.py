"""Admin API for tenants and keys: suspension (keys refused, queued jobs held at claim and released on
reactivation), key expiry, CIDR allowlists, rotation, revocation and last use."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import redis
import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from framefleet.api.app import create_app
from framefleet.api.auth import TOUCH_INTERVAL_SECONDS
from framefleet.config import Settings
from framefleet.db.models import ApiKey, Job, JobTransition
from framefleet.db.session import session_scope
from framefleet.keys import hash_key
from framefleet.queues import queue_name
from framefleet.scheduling import broker
from tests.api.conftest import KeyMaker, job_body, parse_sse, submit

FORBIDDEN = "https://framefleet.dev/problems/forbidden"


def _name() -> str:
    return f"tn-{uuid.uuid4().hex[:8]}"


def test_admin_creates_lists_updates_tenants(client: TestClient, make_key: KeyMaker) -> None:
    admin = make_key()
    name = _name()
    created = client.post("/v1/tenants", json={"name": name, "settings": {"team": "news"}}, headers=admin)
    assert created.status_code == 201, created.text
    assert created.json()["status"] == "active"
    assert created.headers["Location"] == f"/v1/tenants/{name}"
    assert client.post("/v1/tenants", json={"name": name}, headers=admin).status_code == 409
    bad = client.post("/v1/tenants", json={"name": "../etc"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "name"

    updated = client.patch(f"/v1/tenants/{name}", json={"settings": {"team": "sport"}}, headers=admin)
    assert updated.json()["settings"] == {"team": "sport"}
    assert client.get(f"/v1/tenants/{name}", headers=admin).json()["settings"] == {"team": "sport"}
    assert name in [t["name"] for t in client.get("/v1/tenants", headers=admin).json()["items"]]
    assert client.get("/v1/tenants/nope-404", headers=admin).status_code == 404


def test_keys_are_shown_once_stored_hashed_and_carry_their_attributes(
    client: TestClient, make_key: KeyMaker
) -> None:
    admin = make_key()
    name = _name()
    client.post("/v1/tenants", json={"name": name}, headers=admin)
    expires = (datetime.now(UTC) + timedelta(days=30)).replace(microsecond=0)
    response = client.post(
        "/v1/keys",
        json={
            "tenant": name,
            "role": "submitter",
            "expires_at": expires.isoformat(),
            "description": "ci pipeline",
            "allowed_cidrs": ["10.0.0.0/8", "192.168.1.7"],
        },
        headers=admin,
    )
    assert response.status_code == 201, response.text
    key = response.json()
    raw = key.pop("key")
    assert raw.startswith("ff_") and key["prefix"] == raw[:10]
    assert (key["role"], key["description"], key["tenant"]) == ("member", "ci pipeline", name)
    assert key["allowed_cidrs"] == ["10.0.0.0/8", "192.168.1.7/32"]
    assert key["created_by"].startswith("key:")
    listed = client.get(f"/v1/keys?tenant={name}", headers=admin).json()["items"]
    assert [k["id"] for k in listed] == [key["id"]]
    assert all("key" not in k and "key_hash" not in k for k in listed)
    with session_scope() as session:
        stored = session.get(ApiKey, key["id"])
        assert stored is not None and stored.key_hash == hash_key(raw) and raw not in stored.key_hash

    for body, field in (
        ({"tenant": name, "role": "root"}, "role"),
        ({"tenant": name, "allowed_cidrs": ["10.0.0.300/8"]}, "allowed_cidrs"),
        ({"tenant": name, "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
    ):
        refused = client.post("/v1/keys", json=body, headers=admin)
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == field, refused.text
    assert client.post("/v1/keys", json={"tenant": "no-such-tenant"}, headers=admin).status_code == 404


def _new_key(client: TestClient, admin: dict[str, str], tenant: str, **fields: object) -> tuple[int, str]:
    response = client.post("/v1/keys", json={"tenant": tenant, **fields}, headers=admin)
    assert response.status_code == 201, response.text
    return response.json()["id"], response.json()["key"]


def test_expired_key_is_401_saying_so(client: TestClient, make_key: KeyMaker) -> None:
    admin = make_key()
    name = _name()
    client.post("/v1/tenants", json={"name": name}, headers=admin)
    key_id, raw = _new_key(client, admin, name)
    assert client.get("/v1/jobs", headers={"X-API-Key": raw}).status_code == 200
    with session_scope() as session:
        session.execute(
            sa.update(ApiKey)
            .where(ApiKey.id == key_id)
            .values(expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    client.app.state.key_cache.clear()  # type: ignore[attr-defined]
    response = client.get("/v1/jobs", headers={"X-API-Key": raw})
    assert response.status_code == 401
    assert "expired" in response.json()["detail"]
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_cidr_allowlist_refuses_other_addresses(api_app: FastAPI, make_key: KeyMaker) -> None:
    admin = make_key()
    name = _name()
    with TestClient(api_app, client=("10.1.2.3", 40000)) as inside:
        inside.post("/v1/tenants", json={"name": name}, headers=admin)
        _, raw = _new_key(inside, admin, name, allowed_cidrs=["10.0.0.0/8"])
        assert inside.get("/v1/jobs", headers={"X-API-Key": raw}).status_code == 200
    with TestClient(api_app, client=("192.0.2.9", 40000)) as outside:
        response = outside.get("/v1/jobs", headers={"X-API-Key": raw})
    assert response.status_code == 403
    assert response.json()["type"] == FORBIDDEN
    assert "192.0.2.9" in response.json()["detail"]


def test_revoke_applies_at_once_here_and_rotation_replaces_the_key(
    client: TestClient, make_key: KeyMaker
) -> None:
    admin = make_key()
    name = _name()
    client.post("/v1/tenants", json={"name": name}, headers=admin)
    key_id, raw = _new_key(client, admin, name, role="viewer", description="dashboard")
    assert client.get("/v1/jobs", headers={"X-API-Key": raw}).status_code == 200

    rotated = client.post(f"/v1/keys/{key_id}/rotate", headers=admin)
    assert rotated.status_code == 201
    new = rotated.json()
    assert (new["role"], new["description"], new["replaces_id"]) == ("viewer", "dashboard", key_id)
    assert client.get("/v1/jobs", headers={"X-API-Key": raw}).status_code == 401
    assert client.get("/v1/jobs", headers={"X-API-Key": new["key"]}).status_code == 200

    assert client.post(f"/v1/keys/{new['id']}/revoke", headers=admin).status_code == 200
    assert client.get("/v1/jobs", headers={"X-API-Key": new["key"]}).status_code == 401
    assert client.post(f"/v1/keys/{new['id']}/revoke", headers=admin).status_code == 409
    assert client.get(f"/v1/keys/{new['id']}", headers=admin).json()["revoked_at"] is not None


def test_last_used_is_recorded_without_a_write_per_request(client: TestClient, make_key: KeyMaker) -> None:
    admin = make_key()
    name = _name()
    client.post("/v1/tenants", json={"name": name}, headers=admin)
    key_id, raw = _new_key(client, admin, name)
    assert client.get(f"/v1/keys/{key_id}", headers=admin).json()["last_used_at"] is None
    client.get("/v1/jobs", headers={"X-API-Key": raw})
    first = client.get(f"/v1/keys/{key_id}", headers=admin).json()["last_used_at"]
    assert first is not None
    for _ in range(5):
        client.get("/v1/jobs", headers={"X-API-Key": raw})
    # Within TOUCH_INTERVAL_SECONDS the stored time does not move: no write per request.
    assert TOUCH_INTERVAL_SECONDS >= 60
    assert client.get(f"/v1/keys/{key_id}", headers=admin).json()["last_used_at"] == first


def _broker_depth(redis_client: redis.Redis, job: dict[str, object]) -> int:
    name = queue_name(str(job["pool"]), str(job["priority"]))
    return broker.depths(redis_client, [name])[name]


def test_suspension_refuses_keys_holds_queued_jobs_and_reactivation_releases_them(
    client: TestClient, make_key: KeyMaker, api_settings: Settings, redis_client: redis.Redis
) -> None:
    from framefleet.worker.tasks import _claim

    admin = make_key()
    name = _name()
    member = make_key(name, "member")
    job = submit(client, member)
    redis_client.delete(*[k for k in redis_client.scan_iter(match=f"{job['pool']}.*")] or ["-"])

    # An admin may not lock itself out.
    own = client.post(f"/v1/tenants/{_admin_tenant(client, admin)}/suspend", headers=admin)
    assert own.status_code == 409
    suspended = client.post(f"/v1/tenants/{name}/suspend", json={"reason": "invoice overdue"}, headers=admin)
    assert suspended.status_code == 200, suspended.text
    assert (suspended.json()["status"], suspended.json()["status_reason"]) == ("suspended", "invoice overdue")

    refused = client.post("/v1/jobs", json=job_body(), headers=member)
    assert refused.status_code == 403
    assert refused.json()["type"] == FORBIDDEN
    assert f"tenant {name!r} is suspended" in refused.json()["detail"]

    # A worker taking the queued job holds it instead of running it.
    assert _claim(job["id"], "worker-test", api_settings) is None
    with session_scope() as session:
        row = session.get(Job, job["id"])
        assert row is not None and (row.state, row.pending_reason, row.attempt) == (
            "pending",
            "tenant-suspended",
            0,
        )

    reactivated = client.post(f"/v1/tenants/{name}/reactivate", headers=admin)
    assert reactivated.status_code == 200
    assert reactivated.json()["released_jobs"] == 1
    view = client.get(f"/v1/jobs/{job['id']}", headers=member)
    assert view.status_code == 200
    assert (view.json()["state"], view.json()["pending_reason"]) == ("queued", None)
    assert _broker_depth(redis_client, job) == 1  # published again
    history = client.get(f"/v1/jobs/{job['id']}/history", headers=member).json()["items"]
    assert [t["to_state"] for t in history] == ["queued", "pending", "queued"]
    assert "suspended" in history[1]["reason"] and history[2]["actor"].startswith("key:")
    # Now it runs.
    claimed = _claim(job["id"], "worker-test", api_settings)
    assert claimed is not None and claimed[0].state == "running"


def _admin_tenant(client: TestClient, admin: dict[str, str]) -> str:
    with session_scope() as session:
        found = session.execute(
            sa.select(ApiKey.tenant_id).where(ApiKey.key_hash == hash_key(admin["X-API-Key"]))
        ).scalar_one()
        from framefleet.db.models import Tenant

        tenant = session.get(Tenant, found)
        assert tenant is not None
        return tenant.name


def test_cancel_records_who_in_the_history(client: TestClient, make_key: KeyMaker) -> None:
    member = make_key(role="member")
    job = submit(client, member)
    client.post(f"/v1/jobs/{job['id']}/cancel", headers=member)
    with session_scope() as session:
        last = session.scalars(
            sa.select(JobTransition)
            .where(JobTransition.job_id == job["id"])
            .order_by(JobTransition.id.desc())
        ).first()
        key = session.scalars(sa.select(ApiKey).where(ApiKey.key_hash == hash_key(member["X-API-Key"]))).one()
    assert last is not None and last.to_state == "canceled"
    assert last.actor == f"key:{key.id}:{key.prefix}"


def test_operator_reads_any_tenants_jobs_but_members_cannot(client: TestClient, make_key: KeyMaker) -> None:
    name = _name()
    job = submit(client, make_key(name, "member"))
    operator = make_key(role="operator")
    outsider = make_key(role="member")
    assert client.get(f"/v1/jobs/{job['id']}", headers=operator).status_code == 404  # own tenant by default
    seen = client.get(f"/v1/jobs/{job['id']}?tenant={name}", headers=operator)
    assert seen.status_code == 200 and seen.json()["id"] == job["id"]
    assert [j["id"] for j in client.get(f"/v1/jobs?tenant={name}", headers=operator).json()["items"]] == [
        job["id"]
    ]
    refused = client.get(f"/v1/jobs/{job['id']}?tenant={name}", headers=outsider)
    assert refused.status_code == 403 and refused.json()["permission"] == "jobs:read:any"
    assert client.post(f"/v1/jobs/{job['id']}/cancel?tenant={name}", headers=operator).status_code == 403


def test_operators_and_admins_follow_any_tenants_job_events_read_only(
    client: TestClient, make_key: KeyMaker
) -> None:
    name = _name()
    owner = make_key(name, "member")
    job = submit(client, owner)
    # Ended, so that its stream replays everything and closes.
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=owner).status_code == 200
    url = f"/v1/jobs/{job['id']}/events"
    for role in ("operator", "admin"):
        reader = make_key(role=role)
        assert client.get(url, headers=reader).status_code == 404  # its own tenant by default
        with client.stream("GET", f"{url}?tenant={name}", headers=reader) as response:
            assert response.status_code == 200, response.read()
            events = parse_sse("".join(response.iter_text()))
        assert [e["event"] for e in events if "event" in e][-1] == "done"
    for role in ("member", "viewer"):
        outsider = make_key(role=role)
        missing = client.get(url, headers=outsider)
        assert missing.status_code == 404 and missing.json()["type"].endswith("/not-found")
        refused = client.get(f"{url}?tenant={name}", headers=outsider)
        assert refused.status_code == 403 and refused.json()["permission"] == "jobs:read:any"


def test_another_api_process_refuses_a_revoked_key_within_the_cache_ttl(
    api_settings: Settings, make_key: KeyMaker
) -> None:
    import time

    settings = api_settings.model_copy(update={"api_key_cache_seconds": 0.5})
    admin = make_key()
    name = _name()
    with TestClient(create_app(settings)) as first, TestClient(create_app(settings)) as second:
        first.post("/v1/tenants", json={"name": name}, headers=admin)
        key_id, raw = _new_key(first, admin, name)
        headers = {"X-API-Key": raw}
        assert second.get("/v1/jobs", headers=headers).status_code == 200  # now cached in `second`
        assert first.post(f"/v1/keys/{key_id}/revoke", headers=admin).status_code == 200
        revoked_at = time.monotonic()
        assert first.get("/v1/jobs", headers=headers).status_code == 401  # at once where it was revoked
        while second.get("/v1/jobs", headers=headers).status_code == 200:
            assert time.monotonic() - revoked_at <= settings.api_key_cache_seconds + 0.2
            time.sleep(0.05)
        assert second.get("/v1/jobs", headers=headers).status_code == 401

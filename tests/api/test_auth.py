"""Authentication (X-API-Key / Bearer), roles and tenant isolation."""

from __future__ import annotations

import time
import uuid

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from framefleet.api.key_cache import KeyCache
from framefleet.db.models import ApiKey
from framefleet.db.session import session_scope
from framefleet.keys import Principal, hash_key, revoke_key
from tests.api.conftest import KeyMaker, job_body, submit


def test_missing_key_is_401_with_challenge(client: TestClient) -> None:
    response = client.post("/v1/jobs", json=job_body())
    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["type"] == "https://framefleet.dev/problems/unauthorized"


def test_unknown_key_is_401(client: TestClient) -> None:
    for headers in ({"X-API-Key": "ff_not-a-real-key"}, {"Authorization": "Bearer nope"}):
        response = client.get("/v1/jobs", headers=headers)
        assert response.status_code == 401
        assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


def test_revoked_key_is_401(api_app: FastAPI, client: TestClient, tenant_key: tuple[str, str]) -> None:
    headers = {"X-API-Key": tenant_key[1]}
    assert client.get("/v1/jobs", headers=headers).status_code == 200
    with session_scope() as session:
        key_id = session.scalar(sa.select(ApiKey.id).where(ApiKey.key_hash == hash_key(tenant_key[1])))
        assert key_id is not None
        revoke_key(session, key_id)
    # This process remembers the key for a few seconds; forgetting it applies the revocation at once.
    assert client.get("/v1/jobs", headers=headers).status_code == 200
    api_app.state.key_cache.clear()
    assert client.get("/v1/jobs", headers=headers).status_code == 401


def test_key_cache_forgets_after_its_ttl(tenant_key: tuple[str, str]) -> None:
    principal = Principal(tenant_id=1, tenant="t", key_id=1, role="viewer")
    cache = KeyCache(ttl_seconds=0.05)
    cache.put(tenant_key[1], principal)
    assert cache.get(tenant_key[1]) == principal
    assert cache.get(tenant_key[1] + "x") is None
    time.sleep(0.06)
    assert cache.get(tenant_key[1]) is None

    disabled = KeyCache(ttl_seconds=0)
    disabled.put(tenant_key[1], principal)
    assert disabled.get(tenant_key[1]) is None


def test_basic_auth_is_not_a_key(client: TestClient) -> None:
    response = client.get("/v1/jobs", headers={"Authorization": "Basic dXNlcjpwYXNz"})
    assert response.status_code == 401


def test_viewer_reads_but_cannot_submit_or_cancel(client: TestClient, make_key: KeyMaker) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    admin = make_key(tenant, "admin")
    viewer = make_key(tenant, "viewer")
    job = submit(client, admin)

    assert client.get(f"/v1/jobs/{job['id']}", headers=viewer).status_code == 200
    assert client.get("/v1/jobs", headers=viewer).json()["items"][0]["id"] == job["id"]

    refused = client.post("/v1/jobs", json=job_body(), headers=viewer)
    assert refused.status_code == 403
    assert refused.json()["type"] == "https://framefleet.dev/problems/forbidden"
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=viewer).status_code == 403
    assert client.get(f"/v1/jobs/{job['id']}", headers=viewer).json()["state"] == "queued"


def test_submitter_may_submit_and_cancel(client: TestClient, make_key: KeyMaker) -> None:
    submitter = make_key(role="submitter")
    job = submit(client, submitter)
    assert client.post(f"/v1/jobs/{job['id']}/cancel", headers=submitter).status_code == 200


def test_other_tenants_jobs_do_not_exist(client: TestClient, make_key: KeyMaker) -> None:
    alice, bob = make_key(), make_key()
    job = submit(client, alice)
    bobs = submit(client, bob)

    for method, path in [
        ("GET", f"/v1/jobs/{job['id']}"),
        ("GET", f"/v1/jobs/{job['id']}/history"),
        ("GET", f"/v1/jobs/{job['id']}/events"),
        ("POST", f"/v1/jobs/{job['id']}/cancel"),
    ]:
        response = client.request(method, path, headers=bob)
        assert response.status_code == 404, (method, path, response.text)
        assert response.json()["type"] == "https://framefleet.dev/problems/not-found"

    assert [j["id"] for j in client.get("/v1/jobs", headers=bob).json()["items"]] == [bobs["id"]]
    assert [j["id"] for j in client.get("/v1/jobs", headers=alice).json()["items"]] == [job["id"]]
    assert client.get(f"/v1/jobs/{job['id']}", headers=alice).json()["state"] == "queued"


def test_unknown_job_is_404(client: TestClient, auth: dict[str, str]) -> None:
    for job_id in (str(uuid.uuid4()), "not-a-uuid"):
        response = client.get(f"/v1/jobs/{job_id}", headers=auth)
        assert response.status_code == 404
        assert response.json()["detail"] == f"no job {job_id}"

"""The audit log: every state-changing request and admin action, who/what/outcome, scoped reads, cursors."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from fastapi import FastAPI
from fastapi.testclient import TestClient

from framefleet.db.models import ApiKey, AuditEvent
from framefleet.db.session import session_scope
from framefleet.keys import hash_key
from tests.api.conftest import KeyMaker, job_body, submit


def _flush(app: FastAPI) -> None:
    app.state.audit_writer.flush()


def _key_actor(headers: dict[str, str]) -> str:
    with session_scope() as session:
        key = session.scalars(
            sa.select(ApiKey).where(ApiKey.key_hash == hash_key(headers["X-API-Key"]))
        ).one()
        return f"key:{key.id}:{key.prefix}"


def _rows(client: TestClient, headers: dict[str, str], **query: Any) -> list[dict[str, Any]]:
    response = client.get("/v1/audit", params=query, headers=headers)
    assert response.status_code == 200, response.text
    items: list[dict[str, Any]] = response.json()["items"]
    return items


def test_submit_cancel_and_refusals_are_recorded(
    api_app: FastAPI, client: TestClient, make_key: KeyMaker
) -> None:
    tenant = f"au-{uuid.uuid4().hex[:8]}"
    member, viewer = make_key(tenant, "member"), make_key(tenant, "viewer")
    job = submit(client, member, priority="low")
    client.post(f"/v1/jobs/{job['id']}/cancel", headers={**member, "X-Request-ID": "req-cancel-1"})
    assert client.post("/v1/jobs", json=job_body(), headers=viewer).status_code == 403
    client.get("/v1/jobs", headers=member)  # reads are not recorded

    _flush(api_app)
    rows = _rows(client, member)
    assert [(r["action"], r["outcome"], r["status"]) for r in rows] == [
        ("jobs.submit", "denied", 403),
        ("jobs.cancel", "ok", 200),
        ("jobs.submit", "ok", 201),
    ]
    denied, cancel, created = rows
    assert created["target"] == f"/v1/jobs/{job['id']}"
    assert cancel["target"] == f"job_id={job['id']}" and cancel["request_id"] == "req-cancel-1"
    assert (cancel["actor"], cancel["role"], cancel["tenant"]) == (_key_actor(member), "member", tenant)
    assert denied["actor"] == _key_actor(viewer)
    assert created["client_ip"] == "testclient"


def test_anonymous_refusals_are_recorded_without_a_tenant(api_app: FastAPI, client: TestClient) -> None:
    marker = f"/v1/jobs/{uuid.uuid4()}/cancel"
    assert client.post(marker).status_code == 401
    _flush(api_app)
    with session_scope() as session:
        row = session.scalars(sa.select(AuditEvent).order_by(AuditEvent.id.desc()).limit(1)).one()
    assert (row.actor, row.tenant, row.outcome, row.status) == ("anonymous", None, "denied", 401)


def test_admin_actions_write_one_row_in_their_transaction(
    api_app: FastAPI, client: TestClient, make_key: KeyMaker
) -> None:
    admin = make_key()
    name = f"au-{uuid.uuid4().hex[:8]}"
    client.post("/v1/tenants", json={"name": name}, headers=admin)
    key_id = client.post("/v1/keys", json={"tenant": name, "role": "viewer"}, headers=admin).json()["id"]
    client.post(f"/v1/keys/{key_id}/revoke", headers=admin)
    client.post(f"/v1/tenants/{name}/suspend", headers=admin)
    _flush(api_app)
    actions = [r["action"] for r in _rows(client, admin, actor=_key_actor(admin))]
    # Newest first, and no second generic row (tenancy.create_tenant …) for the same request.
    assert actions == ["tenant.suspend", "key.revoke", "key.create", "tenant.create"]


def test_tenants_see_only_their_rows_admins_see_all_and_pages_follow_cursors(
    api_app: FastAPI, client: TestClient, make_key: KeyMaker
) -> None:
    alice, bob = make_key(role="member"), make_key(role="member")
    for _ in range(5):
        submit(client, alice)
    submit(client, bob)
    _flush(api_app)
    alice_actor = _key_actor(alice)
    assert {r["actor"] for r in _rows(client, alice)} == {alice_actor}
    assert client.get("/v1/audit?tenant=someone-else", headers=alice).status_code == 403

    admin = make_key()
    pages, cursor = [], None
    while True:
        params: dict[str, Any] = {"actor": alice_actor, "limit": 2}
        if cursor:
            params["cursor"] = cursor
        body = client.get("/v1/audit", params=params, headers=admin).json()
        pages.append([r["id"] for r in body["items"]])
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert [len(p) for p in pages] == [2, 2, 1]
    flat = [i for p in pages for i in p]
    assert flat == sorted(flat, reverse=True) and len(set(flat)) == 5
    assert client.get("/v1/audit?cursor=bogus", headers=admin).status_code == 422


def test_the_application_never_updates_or_deletes_audit_rows() -> None:
    # A guard on the code: no UPDATE of audit_events anywhere in the package, and DELETE only in the
    # retention command's `audit.prune` (framefleet/tenancy/audit.py).
    from pathlib import Path

    import framefleet

    root = Path(framefleet.__file__).parent
    updates = [
        str(path)
        for path in root.rglob("*.py")
        for line in path.read_text().splitlines()
        if "update(AuditEvent" in line
    ]
    deletes = [
        str(path.relative_to(root))
        for path in root.rglob("*.py")
        for line in path.read_text().splitlines()
        if "delete(AuditEvent" in line
    ]
    assert updates == []
    assert deletes == ["tenancy/audit.py"]

"""Tenant isolation, walked from the OpenAPI document: every route that addresses one tenant's object by id
or name answers a member of another tenant 404 (not 403, which would confirm the object exists, and never
200). Routes that address no tenant's object are listed below with the reason, so a new route is either
checked here or explained; an unlisted route fails the test."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi.testclient import TestClient

from framefleet.tenancy.permissions import PERMISSIONS
from tests.api.conftest import KeyMaker, job_body, submit
from tests.api.test_permissions import operations

# (method, path) -> why the route is not checked here.
NOT_TENANT_SCOPED: dict[tuple[str, str], str] = {
    # Collections and creations act on the caller's own tenant; nothing names another tenant's object.
    ("post", "/v1/jobs"): "creates in the caller's tenant",
    ("post", "/v1/jobs/batch"): "creates in the caller's tenant",
    ("get", "/v1/jobs"): "lists the caller's tenant (checked below: nothing of the other tenant shows)",
    ("get", "/v1/presets"): "lists the caller's tenant and the built-ins (checked below)",
    ("post", "/v1/presets"): "creates in the caller's tenant",
    ("get", "/v1/templates"): "lists the caller's tenant (checked below)",
    ("post", "/v1/templates"): "creates in the caller's tenant",
    ("get", "/v1/webhooks"): "lists the caller's tenant (checked below)",
    ("post", "/v1/webhooks"): "creates in the caller's tenant",
    ("post", "/v1/webhooks/notify-secret"): "the caller's tenant's own per-job notify secret",
    ("get", "/v1/schedules"): "lists the caller's tenant (checked below)",
    ("post", "/v1/schedules"): "creates in the caller's tenant",
    ("get", "/v1/usage"): "the caller's tenant's usage",
    ("get", "/v1/usage/days"): "the caller's tenant's usage per day (its own jobs only)",
    ("get", "/v1/storage"): "lists the caller's tenant (checked below)",
    ("post", "/v1/storage"): "creates in the caller's tenant",
    ("post", "/v1/uploads"): "creates in the caller's tenant",
    ("post", "/v1/uploads/presign"): "signs an upload into the caller's tenant's area",
    ("get", "/v1/workflows"): "lists the caller's tenant (checked below)",
    ("post", "/v1/workflows"): "creates in the caller's tenant",
    ("get", "/v1/audit"): "the caller's tenant's audit rows (checked below)",
    # Installation-wide: refused (403) to members whatever the object, so there is no tenant's object to hide.
    ("get", "/v1/workers"): "operators and admins only",
    ("get", "/v1/queues"): "operators and admins only",
    ("get", "/v1/pools"): "operators and admins only",
    ("get", "/v1/slo"): "operators and admins only",
    ("get", "/v1/failures"): "operators and admins only",
    ("get", "/v1/workers/{worker_id}"): "operators and admins only",
    ("post", "/v1/workers/{worker_id}/drain"): "operators and admins only",
    ("post", "/v1/workers/{worker_id}/cordon"): "operators and admins only",
    ("post", "/v1/workers/{worker_id}/uncordon"): "operators and admins only",
    ("post", "/v1/jobs/{job_id}/hold"): "operators and admins only (legal hold)",
    ("delete", "/v1/jobs/{job_id}/hold"): "operators and admins only (legal hold)",
    ("get", "/v1/tenants"): "admins only",
    ("post", "/v1/tenants"): "admins only",
    ("get", "/v1/tenants/{name}"): "admins only",
    ("patch", "/v1/tenants/{name}"): "admins only",
    ("post", "/v1/tenants/{name}/suspend"): "admins only",
    ("post", "/v1/tenants/{name}/reactivate"): "admins only",
    ("get", "/v1/tenants/{name}/usage"): "admins only",
    ("get", "/v1/keys"): "admins only",
    ("post", "/v1/keys"): "admins only",
    ("get", "/v1/keys/{key_id}"): "admins only",
    ("post", "/v1/keys/{key_id}/revoke"): "admins only",
    ("post", "/v1/keys/{key_id}/rotate"): "admins only",
    # Template names are per tenant: PUT adds a version to the caller's own template of that name.
    (
        "put",
        "/v1/templates/{name}",
    ): "addresses the caller's own template of that name (404 when it has none)",
}

TUS = {"Tus-Resumable": "1.0.0"}
# Headers the tus routes need so that the request reaches the lookup (a 412 or 415 would hide the answer).
HEADERS: dict[tuple[str, str], dict[str, str]] = {
    (method, "/v1/uploads/{upload_id}"): TUS for method in ("head", "get", "delete")
} | {
    ("patch", "/v1/uploads/{upload_id}"): {
        **TUS,
        "Upload-Offset": "0",
        "Content-Type": "application/offset+octet-stream",
    }
}

# Bodies for routes that need one, so that the request reaches the lookup (a 422 would hide the answer).
BODIES: dict[tuple[str, str], dict[str, Any]] = {
    ("patch", "/v1/jobs/{job_id}"): {"priority": "high"},
    ("post", "/v1/jobs/{job_id}/share"): {"output": "web", "expires_in_seconds": 600},
    ("patch", "/v1/storage/{name}"): {"prefix": "mine-now"},
    ("patch", "/v1/presets/{name}"): {"description": "mine now"},
    ("patch", "/v1/webhooks/{webhook_id}"): {"enabled": False},
    ("post", "/v1/webhooks/{webhook_id}/rotate-secret"): {"grace_seconds": 0},
    ("patch", "/v1/schedules/{schedule_id}"): {"enabled": False},
}


def _created(response: Any) -> dict[str, Any]:
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_every_tenant_scoped_route_answers_a_foreign_member_404(
    client: TestClient, make_key: KeyMaker
) -> None:
    owner_tenant = f"iso-{uuid.uuid4().hex[:8]}"
    owner = make_key(owner_tenant, "member")
    # One object of every kind the owner's tenant can hold.
    job = submit(client, owner)
    name = f"iso-{uuid.uuid4().hex[:6]}"
    output = {"container": "mp4", "video": {"height": 240}}
    _created(client.post("/v1/presets", json={"name": name, "output": output}, headers=owner))
    _created(client.post("/v1/templates", json={"name": name, "spec": job_body()}, headers=owner))
    hook = _created(client.post("/v1/webhooks", json={"url": "https://hooks.example/iso"}, headers=owner))
    schedule = _created(
        client.post(
            "/v1/schedules", json={"name": name, "cron": "*/5 * * * *", "spec": job_body()}, headers=owner
        )
    )
    _created(
        client.post(
            "/v1/storage",
            json={
                "name": name,
                "kind": "s3",
                "bucket": "iso-bucket",
                "credentials": {"access_key_id": "iso", "secret_access_key": "iso-secret"},
            },
            headers=owner,
        )
    )
    upload = client.post("/v1/uploads", headers={**owner, **TUS, "Upload-Length": "10"})
    assert upload.status_code == 201, upload.text
    workflow = _created(
        client.post(
            "/v1/workflows",
            json={"name": name, "steps": [{"name": "only", "spec": job_body()}]},
            headers=owner,
        )
    )
    values = {
        "workflow_id": workflow["id"],
        "upload_id": upload.headers["Location"].rsplit("/", 1)[-1],
        "path": "x.mp4",
        "job_id": job["id"],
        "name": name,
        "webhook_id": str(hook["id"]),
        # The delivery route is reached through the owner's endpoint; that is what must stay hidden.
        "delivery_id": "1",
        "schedule_id": str(schedule["id"]),
    }
    foreign_tenant = f"iso-{uuid.uuid4().hex[:8]}"
    foreign = make_key(foreign_tenant, "member")
    document = client.get("/v1/openapi.json").json()

    checked = []
    for method, path, operation in operations(document):
        if (method, path) in NOT_TENANT_SCOPED:
            continue
        # Everything else names an object; a member may call it in its own tenant.
        assert "{" in path, f"{method.upper()} {path}: list it in NOT_TENANT_SCOPED with the reason"
        assert "member" in PERMISSIONS[operation["x-permission"]] or operation["x-permission"].endswith(
            ":read"
        ), (method, path)
        url = re.sub(r"\{(\w+)\}", lambda match: values[match.group(1)], path)
        headers = {**foreign, **HEADERS.get((method, path), {})}
        if method == "patch" and path == "/v1/uploads/{upload_id}":
            response = client.request(method, url, headers=headers, content=b"x")
        else:
            response = client.request(method, url, headers=headers, json=BODIES.get((method, path)))
        assert response.status_code == 404, (method, path, response.status_code, response.text[:300])
        assert response.headers["content-type"].startswith("application/problem+json"), (method, path)
        checked.append((method, path))
    assert len(checked) >= 20, checked

    # The owner's objects are untouched by all that, and none shows in the foreign tenant's lists.
    assert client.get(f"/v1/jobs/{job['id']}", headers=owner).json()["state"] == "queued"
    assert client.get(f"/v1/webhooks/{hook['id']}", headers=owner).json()["enabled"] is True
    for listing in (
        "/v1/jobs",
        "/v1/presets",
        "/v1/templates",
        "/v1/webhooks",
        "/v1/schedules",
        "/v1/workflows",
    ):
        answer = client.get(listing, headers=foreign)
        assert answer.status_code == 200, (listing, answer.text)
        assert job["id"] not in answer.text and name not in answer.text, listing
    # The foreign tenant's audit log holds its own refused attempts, and nothing of the owner's tenant.
    audit = client.get("/v1/audit", headers=foreign).json()["items"]
    assert audit and {row["tenant"] for row in audit} == {foreign_tenant}


def test_the_exemptions_name_real_routes(client: TestClient) -> None:
    document = client.get("/v1/openapi.json").json()
    routes = {(method, path) for method, path, _ in operations(document)}
    assert set(NOT_TENANT_SCOPED) <= routes, set(NOT_TENANT_SCOPED) - routes
    assert set(BODIES) <= routes

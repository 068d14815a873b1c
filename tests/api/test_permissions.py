"""Every /v1/ route declares one permission, and every role (and no key) gets exactly what the table says."""

from __future__ import annotations

import re
import uuid
from typing import Any

from fastapi.testclient import TestClient

from framefleet.tenancy.permissions import PERMISSIONS, ROLES
from tests.api.conftest import KeyMaker

METHODS = ("get", "post", "put", "patch", "delete")
# What the issue fixes for some routes, whatever the table says elsewhere.
EXPECTED = {
    ("get", "/v1/workers"): "workers:read",
    ("get", "/v1/queues"): "queues:read",
    ("post", "/v1/jobs"): "jobs:submit",
    ("post", "/v1/jobs/{job_id}/cancel"): "jobs:cancel",
    ("get", "/v1/jobs/{job_id}"): "jobs:read",
    ("post", "/v1/tenants/{name}/suspend"): "tenants:manage",
    ("post", "/v1/keys"): "keys:manage",
    ("get", "/v1/audit"): "audit:read",
    ("post", "/v1/workers/{worker_id}/drain"): "workers:manage",
    ("post", "/v1/workers/{worker_id}/cordon"): "workers:manage",
    ("post", "/v1/workers/{worker_id}/uncordon"): "workers:manage",
    ("get", "/v1/pools"): "workers:read",
}


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method, path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS and path.startswith("/v1/") and path != "/v1/openapi.json"
    ]


def concrete(path: str) -> str:
    """A path with its parameters filled in with ids that exist nowhere."""
    values = {
        "job_id": str(uuid.uuid4()),
        "key_id": "999999",
        "webhook_id": "999999",
        "delivery_id": "999999",
        "version": "999",
        "schedule_id": "999999",
        "worker_id": f"nobody@{uuid.uuid4().hex[:6]}:1",
        "workflow_id": str(uuid.uuid4()),
        "path": "x.mp4",
        "upload_id": "0" * 32,
        "name": f"nobody-{uuid.uuid4().hex[:6]}",
    }
    return re.sub(r"\{(\w+)\}", lambda match: values[match.group(1)], path)


def test_every_v1_operation_declares_exactly_one_known_permission(client: TestClient) -> None:
    document = client.get("/v1/openapi.json").json()
    found = operations(document)
    assert len(found) >= 15
    for method, path, operation in found:
        scopes = {
            scope
            for requirement in operation.get("security", [])
            for s in requirement.values()
            for scope in s
        }
        assert len(scopes) == 1 and scopes <= set(PERMISSIONS), (method, path, scopes)
    declared = {(method, path): operation["x-permission"] for method, path, operation in found}
    assert {route: declared.get(route) for route in EXPECTED} == EXPECTED
    assert PERMISSIONS["workers:read"] == PERMISSIONS["queues:read"] == {"admin", "operator"}
    assert PERMISSIONS["workers:manage"] == {"admin", "operator"}


def test_the_document_states_each_operations_permission(client: TestClient) -> None:
    document = client.get("/v1/openapi.json").json()
    found = operations(document)
    assert found
    for method, path, operation in found:
        assert operation.get("x-permission") in PERMISSIONS, (method, path)
        assert 403 in {int(code) for code in operation["responses"]}, (method, path)


def test_every_route_times_every_role(client: TestClient, make_key: KeyMaker) -> None:
    tenant = f"perm-{uuid.uuid4().hex[:8]}"
    role_keys = {role: make_key(tenant, role) for role in ROLES}
    document = client.get("/v1/openapi.json").json()
    checked = 0
    for method, path, operation in operations(document):
        permission = operation["x-permission"]
        url = concrete(path)
        # No key: 401 everywhere.
        anonymous = client.request(method, url)
        assert anonymous.status_code == 401, (method, path)
        for role, headers in role_keys.items():
            response = client.request(method, url, headers=headers)
            if role in PERMISSIONS[permission]:
                assert response.status_code not in (401, 403), (method, path, role, response.text)
            else:
                assert response.status_code == 403, (method, path, role, response.text)
                assert response.json()["permission"] == permission
            checked += 1
    assert checked == len(operations(document)) * len(ROLES)

"""Storage I/O end to end on a real worker. Per-tenant storage profiles: a tenant's S3 profile (moto) with
its own credentials, a job that reads and writes `storage://` URIs, the operator's default output location,
tenant isolation, credentials stored encrypted and never returned, downloads signed with the profile's keys.
Uploads: a clip uploaded with tus runs as `upload://<id>`, and the state-changing requests are audited."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from framefleet.api.app import create_app
from framefleet.config import Settings
from framefleet.db.models import StorageProfile
from framefleet.db.session import session_scope
from tests.integration.conftest import wait_for_state

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

TERMINAL = {"succeeded", "failed", "canceled"}


@pytest.fixture()
def client(test_env: dict[str, str]) -> Iterator[TestClient]:
    # moto listens on loopback: the operator allows private endpoints here.
    with TestClient(create_app(Settings(profile_endpoint_allow_private=True))) as test_client:
        yield test_client


def _key(tenant: str, role: str = "admin") -> dict[str, str]:
    from framefleet.keys import create_key

    with session_scope() as session:
        raw, _ = create_key(session, tenant=tenant, role=role)
    return {"X-API-Key": raw}


def _profile(moto_endpoint: str, bucket: str, **extra: Any) -> dict[str, Any]:
    return {
        "name": "media",
        "kind": "s3",
        "bucket": bucket,
        "prefix": "acme",
        "endpoint": moto_endpoint,
        "credentials": {"access_key_id": "tenant-a-key", "secret_access_key": "tenant-a-secret"},
        **extra,
    }


def test_profile_crud_validation_and_secrecy(client: TestClient, moto_endpoint: str) -> None:
    tenant = f"pr-{uuid.uuid4().hex[:8]}"
    admin, member, viewer = _key(tenant), _key(tenant, "member"), _key(tenant, "viewer")
    created = client.post("/v1/storage", json=_profile(moto_endpoint, "tenant-media"), headers=member)
    assert created.status_code == 201, created.text
    view = created.json()
    assert view["has_credentials"] is True and "credentials" not in view and view["uri"] == "storage://media/"
    assert "tenant-a-secret" not in created.text
    listed = client.get("/v1/storage", headers=viewer)
    assert [p["name"] for p in listed.json()["items"]] == ["media"] and "tenant-a" not in listed.text
    with session_scope() as session:
        stored = session.scalar(sa.select(StorageProfile.credentials).where(StorageProfile.name == "media"))
    assert stored is not None and "tenant-a" not in stored  # encrypted at rest
    assert client.post("/v1/storage", json=_profile(moto_endpoint, "x"), headers=member).status_code == 409
    # No credentials: the server's own must never reach a tenant's location.
    bare = _profile(moto_endpoint, "tenant-media", name="bare", credentials=None)
    refused = client.post("/v1/storage", json=bare, headers=member)
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "credentials"
    folder = client.post("/v1/storage", json={"name": "f", "kind": "file", "bucket": "/etc"}, headers=member)
    assert folder.status_code == 422 and folder.json()["errors"][0]["field"] == "bucket"
    # Only an operator sets the default output location.
    denied = client.patch("/v1/storage/media", json={"default_output": True}, headers=member)
    assert denied.status_code == 403 and denied.json()["permission"] == "tenants:manage"
    assert client.patch("/v1/storage/media", json={"default_output": True}, headers=admin).json()[
        "default_output"
    ]
    assert (
        client.post("/v1/storage", json=_profile(moto_endpoint, "y", name="z"), headers=viewer).status_code
        == 403
    )
    # Another tenant does not see it.
    assert client.get("/v1/storage/media", headers=_key(f"o-{uuid.uuid4().hex[:8]}")).status_code == 404
    assert client.delete("/v1/storage/media", headers=member).status_code == 204
    assert client.get("/v1/storage/media", headers=member).status_code == 404


def test_private_endpoints_are_refused_unless_the_operator_allows_them(test_env: dict[str, str]) -> None:
    with TestClient(create_app(Settings())) as strict:
        body = _profile("http://127.0.0.1:9", "b")
        refused = strict.post("/v1/storage", json=body, headers=_key(f"ep-{uuid.uuid4().hex[:8]}"))
    assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "endpoint"
    assert "loopback" in refused.json()["detail"]


def test_job_reads_and_writes_through_a_profile_on_a_real_worker(
    client: TestClient, moto_endpoint: str, worker: Any, clip: Path
) -> None:
    bucket = f"tenant-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=moto_endpoint,
        region_name="us-east-1",
        aws_access_key_id="t",
        aws_secret_access_key="t",
    )
    s3.create_bucket(Bucket=bucket)
    s3.upload_file(str(clip), bucket, "acme/in/clip.mp4")
    tenant = f"pj-{uuid.uuid4().hex[:8]}"
    headers = _key(tenant)
    assert (
        client.post(
            "/v1/storage", json=_profile(moto_endpoint, bucket, default_output=True), headers=headers
        ).status_code
        == 201
    )
    spec = {
        "input": "storage://media/in/clip.mp4",
        "outputs": [
            {"name": "web", "container": "mp4", "video": {"width": 160, "height": 120}, "destination": "storage://media/out/web.mp4"},
            {"name": "plain", "container": "mp4", "video": {"width": 160, "height": 120}},
        ],
    }  # fmt: skip
    submitted = client.post("/v1/jobs", json=spec, headers=headers)
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    job = wait_for_state(lambda: client.get(f"/v1/jobs/{job_id}", headers=headers).json(), TERMINAL)
    assert job["state"] == "succeeded", job
    uris = {o["name"]: o["uri"] for o in job["outputs"]}
    assert uris == {"web": "storage://media/out/web.mp4", "plain": f"storage://media/{job_id}/plain.mp4"}
    keys = {o["Key"] for o in s3.list_objects_v2(Bucket=bucket, Prefix="acme/")["Contents"]}
    assert {"acme/out/web.mp4", f"acme/{job_id}/plain.mp4"} <= keys
    # A download is a redirect signed with the profile's own keys, not the server's.
    answer = client.get(f"/v1/jobs/{job_id}/outputs/web", headers=headers, follow_redirects=False)
    assert answer.status_code == 307 and "tenant-a-key" in answer.headers["location"]
    # Another tenant cannot name this tenant's profile.
    other = client.post("/v1/jobs", json=spec, headers=_key(f"ot-{uuid.uuid4().hex[:8]}"))
    assert other.status_code == 422 and other.json()["errors"][0]["field"] == "input"


def test_uploaded_clip_runs_as_an_upload_uri_and_the_requests_are_audited(
    client: TestClient, worker: Any, clip: Path
) -> None:
    tenant = f"uw-{uuid.uuid4().hex[:8]}"
    headers = _key(tenant)
    data = clip.read_bytes()
    tus = {"Tus-Resumable": "1.0.0"}
    created = client.post("/v1/uploads", headers={**headers, **tus, "Upload-Length": str(len(data))})
    assert created.status_code == 201, created.text
    location = created.headers["Location"]
    for start in range(0, len(data), 64 * 1024):  # a client sending small chunks, as browsers do
        piece = data[start : start + 64 * 1024]
        octets = {
            **headers,
            **tus,
            "Content-Type": "application/offset+octet-stream",
            "Upload-Offset": str(start),
        }
        assert client.patch(location, headers=octets, content=piece).status_code == 204
    upload_uri = client.get(location, headers=headers).json()["uri"]
    spec = {
        "input": upload_uri,
        "outputs": [{"name": "web", "container": "mp4", "video": {"width": 160, "height": 120}}],
    }
    submitted = client.post("/v1/jobs", json=spec, headers=headers)
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    job = wait_for_state(lambda: client.get(f"/v1/jobs/{job_id}", headers=headers).json(), TERMINAL)
    assert job["state"] == "succeeded", job
    assert job["outputs"][0]["duration_seconds"] == pytest.approx(2, abs=0.1)

    # Every state-changing request is in the audit log: the creation, each append, the submission.
    def audited() -> list[str]:
        rows = client.get("/v1/audit", params={"limit": 500, "tenant": tenant}, headers=headers).json()[
            "items"
        ]
        return [row["action"] for row in rows]

    # Audit rows are written in groups after the answers: wait until every one is there.
    appends = -(-len(data) // (64 * 1024))

    def complete() -> bool:
        actions = audited()
        expected = {"uploads.create_upload", "jobs.submit"}
        return actions.count("uploads.append_upload") == appends and expected <= set(actions)

    wait_for_state(lambda: {"state": "done" if complete() else "waiting"}, {"done"}, 20)


def test_a_file_profile_under_an_allowed_root_serves_a_job(
    test_env: dict[str, str], worker: Any, clip: Path, media_root: Path
) -> None:
    """A `file` profile (a folder the operator lists for profiles): the job reads and writes inside it."""
    folder = media_root / "profiles" / uuid.uuid4().hex[:8]
    (folder / "in").mkdir(parents=True)
    (folder / "in" / "clip.mp4").write_bytes(clip.read_bytes())
    settings = Settings(profile_file_roots=[media_root / "profiles"])
    headers = _key(f"pf-{uuid.uuid4().hex[:8]}")
    with TestClient(create_app(settings)) as api:
        body = {"name": "nas", "kind": "file", "bucket": str(folder)}
        assert api.post("/v1/storage", json=body, headers=headers).status_code == 201
        outside = {"name": "etc", "kind": "file", "bucket": str(media_root / "inputs")}
        assert api.post("/v1/storage", json=outside, headers=headers).status_code == 422
        output = {"name": "web", "container": "mp4", "video": {"width": 160, "height": 120}}
        spec = {
            "input": "storage://nas/in/clip.mp4",
            "outputs": [{**output, "destination": "storage://nas/out/web.mp4"}],
        }
        submitted = api.post("/v1/jobs", json=spec, headers=headers)
        assert submitted.status_code == 201, submitted.text
        job_id = submitted.json()["id"]
        job = wait_for_state(lambda: api.get(f"/v1/jobs/{job_id}", headers=headers).json(), TERMINAL)
        assert job["state"] == "succeeded", job
        assert (folder / "out" / "web.mp4").stat().st_size > 0
        # Downloads of outputs in a file profile stream from the profile's folder.
        download = api.get(f"/v1/jobs/{job_id}/outputs/web", headers=headers)
        assert download.status_code == 200 and download.content == (folder / "out" / "web.mp4").read_bytes()

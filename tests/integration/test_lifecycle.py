"""Data lifecycle with a real worker: Azure Blob and GCS jobs end to end, the result cache, retention and
the stored-bytes quota (real files, moto S3, Azurite, the GCS emulator, real ffmpeg)."""

from __future__ import annotations

import contextlib
import json
import os
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import av
import boto3
import pytest
import sqlalchemy as sa
from azure.storage.blob import BlobServiceClient
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage as gcs

from framefleet.cli.main import main
from framefleet.db.models import AuditEvent, Job, StoredObject, utcnow
from framefleet.db.session import session_scope
from framefleet.keys import create_key
from framefleet.lifecycle import ledger, retention
from framefleet.storage import reset_backends
from framefleet.tenancy import audit
from framefleet.tenancy import service as tenancy
from tests import services
from tests.conftest import _reset_caches, make_clip
from tests.integration.conftest import wait_for_state

pytestmark = pytest.mark.integration
TERMINAL = {"succeeded", "failed", "canceled"}
AZ, GS = "media-az", "media-gs"
SMALL = {"container": "mp4", "video": {"codec": "h264", "height": 120, "preset": "ultrafast"}}


@pytest.fixture(scope="module")
def stores(worker_env: dict[str, str], moto_endpoint: str) -> Iterator[dict[str, str]]:
    """Azurite and the GCS emulator, with the settings naming them (and moto) in this process too."""
    az_proc, connection = services.start_azurite()
    gs_proc, endpoint = services.start_fake_gcs()
    BlobServiceClient.from_connection_string(connection).create_container(AZ)
    client = gcs.Client(
        project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
    )
    client.create_bucket(GS)
    extra = {
        "FRAMEFLEET_AZURE_CONNECTION_STRING": connection,
        "FRAMEFLEET_AZURE_ROOTS": json.dumps([f"azure://{AZ}"]),
        "FRAMEFLEET_GCS_ENDPOINT_URL": endpoint,
        "FRAMEFLEET_GCS_PROJECT": "test",
        "FRAMEFLEET_GCS_ROOTS": json.dumps([f"gs://{GS}"]),
    }
    process = {
        k: worker_env[k] for k in worker_env if k.startswith("AWS_") or k == "FRAMEFLEET_S3_ENDPOINT_URL"
    }
    saved = {k: os.environ.get(k) for k in (*extra, *process)}
    os.environ.update({**extra, **process})
    _reset_caches()
    reset_backends()
    try:
        yield {**worker_env, **extra}
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old
        _reset_caches()
        reset_backends()
        services.stop(gs_proc)
        services.stop(az_proc)


@pytest.fixture(scope="module")
def worker(stores: dict[str, str], session_dir: Path) -> Iterator[Any]:
    proc = services.start_worker(stores, session_dir / "logs" / "worker-lifecycle.log")
    yield proc
    services.stop(proc, timeout=20)


@pytest.fixture(scope="module")
def small_clip(ffmpeg: str, media_root: Path) -> Path:
    return make_clip(ffmpeg, media_root / "inputs" / "lifecycle.mp4", seconds=1, size="160x120")


def _key(tenant: str) -> str:
    with session_scope() as session:
        raw, _ = create_key(session, tenant=tenant)
    return raw


def _run(api: Any, key: str, spec: dict[str, Any]) -> dict[str, Any]:
    submitted = api.post("/v1/jobs", json=spec, headers={"X-API-Key": key})
    assert submitted.status_code == 201, submitted.text
    job_id = submitted.json()["id"]
    return wait_for_state(lambda: _get(api, key, job_id), TERMINAL, timeout=120)


def _get(api: Any, key: str, job_id: str) -> dict[str, Any]:
    got = api.get(f"/v1/jobs/{job_id}", headers={"X-API-Key": key})
    assert got.status_code == 200, got.text
    return dict(got.json())


def _decoded(path: Path) -> tuple[str, int]:
    with av.open(str(path)) as container:
        video = container.streams.video[0]
        return video.codec_context.name, video.height


def _local(uri: str) -> Path:
    assert uri.startswith("file://"), uri
    return Path(uri.removeprefix("file://"))


# ---------------------------------------------------------------- Azure Blob and GCS end to end


def test_a_job_reads_from_and_writes_to_azure_blob(
    worker: Any, api: Any, stores: dict[str, str], small_clip: Path, tmp_path: Path
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    blobs = BlobServiceClient.from_connection_string(stores["FRAMEFLEET_AZURE_CONNECTION_STRING"])
    with small_clip.open("rb") as data:
        blobs.get_blob_client(AZ, f"tenants/{tenant}/in/clip.mp4").upload_blob(data)
    out = f"azure://{AZ}/tenants/{tenant}/out/small.mp4"
    spec = {"input": f"azure://{AZ}/tenants/{tenant}/in/clip.mp4", "outputs": [{**SMALL, "destination": out}]}
    job = _run(api, _key(tenant), spec)
    assert job["state"] == "succeeded", job
    assert job["outputs"][0]["uri"] == out
    local = tmp_path / "small.mp4"
    local.write_bytes(blobs.get_blob_client(AZ, f"tenants/{tenant}/out/small.mp4").download_blob().readall())
    assert _decoded(local) == ("h264", 120)
    assert job["input_fingerprint"].startswith("sha256:")


def test_a_job_reads_from_and_writes_to_gcs(
    worker: Any, api: Any, stores: dict[str, str], small_clip: Path, tmp_path: Path
) -> None:
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    client = gcs.Client(
        project="test",
        credentials=AnonymousCredentials(),
        client_options={"api_endpoint": stores["FRAMEFLEET_GCS_ENDPOINT_URL"]},
    )
    client.bucket(GS).blob(f"tenants/{tenant}/in/clip.mp4").upload_from_filename(str(small_clip))
    out = f"gs://{GS}/tenants/{tenant}/out/small.mp4"
    spec = {"input": f"gs://{GS}/tenants/{tenant}/in/clip.mp4", "outputs": [{**SMALL, "destination": out}]}
    job = _run(api, _key(tenant), spec)
    assert job["state"] == "succeeded", job
    local = tmp_path / "small.mp4"
    client.bucket(GS).blob(f"tenants/{tenant}/out/small.mp4").download_to_filename(str(local))
    assert _decoded(local) == ("h264", 120)


# ---------------------------------------------------------------- the result cache


def test_an_identical_job_is_a_cache_hit_with_identical_outputs_unless_cache_false_or_another_tenant(
    worker: Any, api: Any, small_clip: Path
) -> None:
    tenant, other = f"t-{uuid.uuid4().hex[:8]}", f"t-{uuid.uuid4().hex[:8]}"
    key, other_key = _key(tenant), _key(other)
    spec = {
        "input": small_clip.as_uri(),
        "outputs": [{"name": "small", **SMALL}],
        "thumbnails": [{"name": "thumbs", "times": [0.2, 0.6], "width": 64}],
    }
    first = _run(api, key, spec)
    assert first["state"] == "succeeded" and not first["cache_hit"], first
    # Another spelling of the same job: priority and metadata do not change the outputs.
    second = _run(api, key, {**spec, "priority": "high", "metadata": {"run": "2"}})
    assert second["state"] == "succeeded", second
    assert second["cache_hit"] and second["cached_from"] == first["id"], second
    assert second["input_fingerprint"] == first["input_fingerprint"]
    before = {o["name"]: o for o in first["outputs"]}
    after = {o["name"]: o for o in second["outputs"]}
    assert set(after) == set(before)
    for name, output in after.items():
        assert first["id"] in before[name]["uri"] and second["id"] in output["uri"], output["uri"]
        assert output["size_bytes"] == before[name]["size_bytes"]
    assert _local(after["small"]["uri"]).read_bytes() == _local(before["small"]["uri"]).read_bytes()
    pictures = [
        (f["uri"], g["uri"])
        for f, g in zip(
            before["thumbs"]["details"]["files"], after["thumbs"]["details"]["files"], strict=True
        )
    ]
    for old, new in pictures:
        assert second["id"] in new and _local(new).read_bytes() == _local(old).read_bytes()
    # Each job owns its copy: both are counted as stored.
    with session_scope() as session:
        objects = session.scalars(sa.select(StoredObject).where(StoredObject.job_id == second["id"])).all()
        assert objects and all(second["id"] in o.uri for o in objects)

    fresh = _run(api, key, {**spec, "cache": False})
    assert fresh["state"] == "succeeded" and not fresh["cache_hit"], fresh
    theirs = _run(api, other_key, spec)
    assert theirs["state"] == "succeeded" and not theirs["cache_hit"], theirs


# ---------------------------------------------------------------- retention and the stored-bytes quota


def _s3_keys(bucket: str, prefix: str) -> list[str]:
    client = boto3.client(
        "s3", endpoint_url=os.environ["FRAMEFLEET_S3_ENDPOINT_URL"], region_name="us-east-1"
    )
    listed = client.list_objects_v2(Bucket=bucket, Prefix=prefix)
    return [item["Key"] for item in listed.get("Contents", [])]


def _ensure_bucket(bucket: str) -> None:
    client = boto3.client(
        "s3", endpoint_url=os.environ["FRAMEFLEET_S3_ENDPOINT_URL"], region_name="us-east-1"
    )
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket=bucket)


def _mine(done: list[retention.Deletion], *job_ids: str) -> dict[str, retention.Deletion]:
    return {d.job_id: d for d in done if d.job_id in job_ids and d.kind == "outputs"}


def test_retention_deletes_expired_outputs_spares_held_jobs_and_a_dry_run_deletes_nothing(
    worker: Any, api: Any, small_clip: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from framefleet.config import get_settings

    _ensure_bucket("media-out")
    tenant = f"t-{uuid.uuid4().hex[:8]}"
    key = _key(tenant)
    admin = key  # create_key's default role is the tenant's admin: it may hold jobs
    s3_out = f"s3://media-out/tenants/{tenant}/kept-for-a-day/small.mp4"
    spec = {
        "input": small_clip.as_uri(),
        "outputs": [{"name": "local", **SMALL}, {"name": "s3", **SMALL, "destination": s3_out}],
        "retention": {"outputs": 1},
    }
    expiring = _run(api, key, spec)
    assert expiring["state"] == "succeeded", expiring
    held_spec = {**spec, "outputs": [{"name": "local", **SMALL}], "cache": False}
    held = _run(api, key, held_spec)
    assert held["state"] == "succeeded", held
    put = api.post(f"/v1/jobs/{held['id']}/hold", headers={"X-API-Key": admin})
    assert put.status_code == 200 and put.json()["legal_hold"], put.text

    files = {o["name"]: o["uri"] for o in expiring["outputs"]}
    held_file = _local(held["outputs"][0]["uri"])
    assert _local(files["local"]).exists() and _s3_keys("media-out", f"tenants/{tenant}/")
    with session_scope() as session:
        tenant_id = session.get(Job, expiring["id"]).tenant_id  # type: ignore[union-attr]
        stored = ledger.stored_bytes(session, tenant_id=tenant_id)
        expiring_bytes = sum(o.size_bytes for o in ledger.live_objects(session, job_id=expiring["id"]))
    assert stored > expiring_bytes > 0

    settings = get_settings()
    # Not due yet: a day of retention.
    assert not _mine(retention.sweep(settings), expiring["id"])
    later = utcnow() + timedelta(days=1, seconds=5)
    # A dry run lists what is due and deletes nothing.
    dry = _mine(retention.sweep(settings, now=later, dry_run=True), expiring["id"], held["id"])
    assert set(dry) == {expiring["id"]}
    assert set(dry[expiring["id"]].uris) >= {files["local"], s3_out}
    assert _local(files["local"]).exists() and _s3_keys("media-out", f"tenants/{tenant}/")

    # The operator's command says the same, and deletes nothing either.
    assert main(["retention", "sweep", "--dry-run", "--json", "--now", later.isoformat()]) == 0
    listed = [d for d in json.loads(capsys.readouterr().out) if d["job_id"] in (expiring["id"], held["id"])]
    assert [(d["job_id"], d["kind"]) for d in listed] == [(expiring["id"], "outputs")]
    assert _local(files["local"]).exists()

    done = _mine(retention.sweep(settings, now=later), expiring["id"], held["id"])
    assert set(done) == {expiring["id"]} and done[expiring["id"]].error is None
    assert not _local(files["local"]).exists()
    assert _s3_keys("media-out", f"tenants/{tenant}/") == []
    assert held_file.exists(), "a held job is never touched"
    view = _get(api, key, expiring["id"])
    assert view["expired_at"] is not None and {o["status"] for o in view["outputs"]} == {"expired"}
    with session_scope() as session:
        assert ledger.stored_bytes(session, tenant_id=tenant_id) == stored - expiring_bytes
        rows = session.scalars(
            sa.select(AuditEvent).where(
                AuditEvent.action == "retention.delete_outputs", AuditEvent.target == f"job:{expiring['id']}"
            )
        ).all()
        assert len(rows) == 1 and s3_out in rows[0].details["uris"]  # type: ignore[index]
    # A second pass finds nothing more of these jobs; lifting the hold leaves the held job (no retention).
    assert not _mine(retention.sweep(settings, now=later), expiring["id"], held["id"])
    lifted = api.delete(f"/v1/jobs/{held['id']}/hold", headers={"X-API-Key": admin})
    assert lifted.status_code == 200 and not lifted.json()["legal_hold"]


def test_a_held_job_past_its_retention_keeps_its_files_until_the_hold_is_lifted(
    worker: Any, api: Any, small_clip: Path
) -> None:
    from framefleet.config import get_settings

    tenant = f"t-{uuid.uuid4().hex[:8]}"
    key = _key(tenant)
    spec = {
        "input": small_clip.as_uri(),
        "outputs": [{"name": "local", **SMALL}],
        "retention": {"outputs": 0},
    }
    job = _run(api, key, {**spec, "cache": False})
    assert job["state"] == "succeeded", job
    assert api.post(f"/v1/jobs/{job['id']}/hold", headers={"X-API-Key": key}).status_code == 200
    path = _local(job["outputs"][0]["uri"])
    settings = get_settings()
    assert not _mine(retention.sweep(settings, now=utcnow() + timedelta(seconds=5)), job["id"])
    assert path.exists()
    assert api.delete(f"/v1/jobs/{job['id']}/hold", headers={"X-API-Key": key}).status_code == 200
    assert set(_mine(retention.sweep(settings, now=utcnow() + timedelta(seconds=5)), job["id"])) == {
        job["id"]
    }
    assert not path.exists()


def test_stored_bytes_quota_refuses_then_frees_after_deletion_and_reconcile_follows_the_store(
    worker: Any, api: Any, small_clip: Path
) -> None:
    from framefleet.config import get_settings
    from framefleet.lifecycle.storage import exists_for

    tenant = f"t-{uuid.uuid4().hex[:8]}"
    key = _key(tenant)
    spec = {
        "input": small_clip.as_uri(),
        "outputs": [{"name": "local", **SMALL}],
        "retention": {"outputs": 0},
    }
    job = _run(api, key, spec)
    assert job["state"] == "succeeded", job
    with session_scope() as session:
        tenant_id = session.get(Job, job["id"]).tenant_id  # type: ignore[union-attr]
        stored = ledger.stored_bytes(session, tenant_id=tenant_id)
    assert stored == job["outputs"][0]["size_bytes"] > 0
    with session_scope() as session:
        tenancy.update_tenant(
            session, name=tenant, settings={"quotas": {"output_bytes": stored}}, actor=audit.CLI
        )
    key = _key(tenant)  # a fresh key: no cached principal with the old settings
    refused = api.post("/v1/jobs", json=spec, headers={"X-API-Key": key})
    assert refused.status_code == 429, refused.text
    body = refused.json()
    assert (body["quota"], body["usage"], body["limit"]) == ("output_bytes", stored, stored)
    assert refused.headers.get("Retry-After")

    # A file removed behind FrameFleet's back: reconcile asks the store and takes it off.
    path = _local(job["outputs"][0]["uri"])
    path.unlink()
    settings = get_settings()
    with session_scope() as session:
        [result] = ledger.reconcile(
            session, exists=exists_for(session, settings), tenant_id=tenant_id, dry_run=True
        )
        assert (result.before, result.after, result.missing) == (stored, 0, [job["outputs"][0]["uri"]])
        assert ledger.stored_bytes(session, tenant_id=tenant_id) == stored  # a dry run changes nothing
        ledger.reconcile(session, exists=exists_for(session, settings), tenant_id=tenant_id)
    with session_scope() as session:
        assert ledger.stored_bytes(session, tenant_id=tenant_id) == 0
    accepted = api.post("/v1/jobs", json={**spec, "cache": False}, headers={"X-API-Key": key})
    assert accepted.status_code == 201, accepted.text
    wait_for_state(lambda: _get(api, key, accepted.json()["id"]), TERMINAL, timeout=120)

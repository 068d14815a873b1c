"""Resumable uploads (tus 1.0.0) against a real `framefleet api` process: the protocol's answers, tenant
isolation, limits, expiry, `upload://` inputs, and a large upload interrupted halfway and resumed while the
API's peak memory stays flat (measured from /proc). Pre-signed direct uploads against moto."""

from __future__ import annotations

import base64
import os
import random
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from fastapi.testclient import TestClient

from framefleet.api.app import create_app
from framefleet.config import Settings
from framefleet.db.models import Job, Tenant, Upload, utcnow
from framefleet.db.session import session_scope
from framefleet.lifecycle import retention
from framefleet.scheduling.maintenance import expire_uploads
from framefleet.storage import reset_backends
from framefleet.storage.local import parse_file_uri
from tests import services
from tests.api.conftest import KeyMaker, job_body

pytestmark = pytest.mark.timeout(300)

TUS = {"Tus-Resumable": "1.0.0"}
OCTETS = {**TUS, "Content-Type": "application/offset+octet-stream"}
# The interrupted-and-resumed upload: 2 GiB (about 20 s here: disk speed); FRAMEFLEET_TEST_UPLOAD_BYTES
# makes it smaller where the disk is slow. The memory bound is the same either way.
BIG = int(os.environ.get("FRAMEFLEET_TEST_UPLOAD_BYTES", str(2 * 1024**3)))
BLOCK = 1024 * 1024


@pytest.fixture(scope="module")
def api_process(
    test_env: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, int]]:
    """A real API process (uvicorn): its base URL and pid."""
    port = services.free_port()
    log = (tmp_path_factory.mktemp("api") / "api.log").open("w")
    env = {**test_env, "FRAMEFLEET_ADMISSION_CHECK": "false", "FRAMEFLEET_LOG_LEVEL": "WARNING"}
    command = [
        str(Path(sys.executable).parent / "framefleet"),
        "api",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    services.wait_until(lambda: httpx.get(f"{url}/healthz", timeout=1).status_code == 200, 30, "api", proc)
    yield url, proc.pid
    services.stop(proc)
    log.close()


def _metadata(filename: str) -> str:
    return "filename " + base64.b64encode(filename.encode()).decode()


def _create(http: httpx.Client, length: int, filename: str = "clip.bin") -> str:
    created = http.post(
        "/v1/uploads", headers={**TUS, "Upload-Length": str(length), "Upload-Metadata": _metadata(filename)}
    )
    assert created.status_code == 201, created.text
    assert created.headers["Tus-Resumable"] == "1.0.0" and created.headers["Upload-Offset"] == "0"
    return str(created.headers["Location"])


def _offset(http: httpx.Client, location: str) -> int:
    head = http.head(location, headers=TUS)
    assert head.status_code == 200, head.status_code
    assert head.headers["Cache-Control"] == "no-store"
    return int(head.headers["Upload-Offset"])


def test_tus_protocol_and_tenant_isolation(
    api_process: tuple[str, int], make_key: KeyMaker, clip: Path
) -> None:
    url, _ = api_process
    tenant = f"up-{uuid.uuid4().hex[:8]}"
    data = clip.read_bytes()
    half = len(data) // 2
    with httpx.Client(base_url=url, headers=make_key(tenant), timeout=30) as http:
        options = http.options("/v1/uploads")
        assert options.status_code == 204 and options.headers["Tus-Version"] == "1.0.0"
        assert (
            "creation" in options.headers["Tus-Extension"]
            and "termination" in options.headers["Tus-Extension"]
        )
        wrong = http.post("/v1/uploads", headers={"Upload-Length": "10"})
        assert wrong.status_code == 412 and wrong.headers["Tus-Version"] == "1.0.0"
        assert wrong.json()["type"].endswith("/tus-version")
        location = _create(http, len(data), "my clip.mp4")
        assert _offset(http, location) == 0
        first = http.patch(location, headers={**OCTETS, "Upload-Offset": "0"}, content=data[:half])
        assert first.status_code == 204 and first.headers["Upload-Offset"] == str(half)
        assert "Upload-Expires" in first.headers
        stale = http.patch(location, headers={**OCTETS, "Upload-Offset": "0"}, content=data[:half])
        assert stale.status_code == 409 and stale.json()["offset"] == half
        assert stale.json()["type"].endswith("/upload-offset-mismatch")
        typed = http.patch(
            location, headers={**TUS, "Upload-Offset": str(half), "Content-Type": "text/plain"}, content=b"x"
        )
        assert typed.status_code == 415
        overflow = http.patch(
            location, headers={**OCTETS, "Upload-Offset": str(half)}, content=data[half:] + b"extra"
        )
        assert overflow.status_code == 413
        assert _offset(http, location) == half  # refused whole: the tail grew nothing beyond the length
        rest = http.patch(location, headers={**OCTETS, "Upload-Offset": str(half)}, content=data[half:])
        assert rest.status_code == 204 and rest.headers["Upload-Offset"] == str(len(data))
        view = http.get(location).json()
        upload_uri = view["uri"]
        assert view["state"] == "complete" and upload_uri == f"upload://{location.rsplit('/', 1)[-1]}"
        stored = Path(parse_file_uri(view["stored_uri"]))
        assert stored.name == "my clip.mp4" and stored.read_bytes() == data
        assert f"/tenants/{tenant}/uploads/" in str(stored)
        submitted = http.post("/v1/jobs", json=job_body(input=upload_uri))
        assert submitted.status_code == 201, submitted.text
        assert submitted.json()["spec"]["input"] == view["stored_uri"]
    with httpx.Client(base_url=url, headers=make_key(), timeout=30) as other:
        assert other.head(location, headers=TUS).status_code == 404
        assert other.get(location).status_code == 404
        assert other.delete(location, headers=TUS).status_code == 404
        refused = other.post("/v1/jobs", json=job_body(input=upload_uri))
        assert refused.status_code == 422 and refused.json()["errors"][0]["field"] == "input"
    with httpx.Client(base_url=url, headers=make_key(tenant), timeout=30) as http:
        assert http.delete(location, headers=TUS).status_code == 204
        assert not stored.exists() and http.head(location, headers=TUS).status_code == 404
        assert http.post("/v1/jobs", json=job_body(input=upload_uri)).status_code == 422


def test_limits_and_expiry_of_abandoned_uploads(
    api_process: tuple[str, int], make_key: KeyMaker, test_env: dict[str, str]
) -> None:
    url, _ = api_process
    tenant = f"lim-{uuid.uuid4().hex[:8]}"
    headers = make_key(tenant)
    with session_scope() as session:
        row = session.query(Tenant).filter_by(name=tenant).one()
        row.settings = {"uploads": {"max_bytes": 1000}}
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        big = http.post("/v1/uploads", headers={**TUS, "Upload-Length": "1001"})
        assert big.status_code == 413 and big.headers["Tus-Max-Size"] == "1000"
        location = _create(http, 1000)
        assert (
            http.patch(location, headers={**OCTETS, "Upload-Offset": "0"}, content=b"a" * 10).status_code
            == 204
        )
        # While one PATCH streams into the upload, another is refused rather than interleaved.
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            head = (
                f"PATCH {location} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {headers['X-API-Key']}\r\n"
                f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Upload-Offset: 10\r\nContent-Length: 100\r\n\r\n"
            )
            sock.sendall(head.encode() + b"b" * 5)
            busy = None
            for _ in range(50):  # until the first request holds the upload
                # Empty: until the first request holds the upload, this one appends nothing and succeeds.
                busy = http.patch(location, headers={**OCTETS, "Upload-Offset": "10"}, content=b"")
                if busy.status_code == 409 and busy.json()["type"].endswith("/conflict"):
                    break
                time.sleep(0.1)
            assert busy is not None and busy.status_code == 409 and "another request" in busy.json()["detail"]
        upload_id = location.rsplit("/", 1)[-1]
        settings = Settings()
        part = settings.upload_dir / tenant / f"{upload_id}.part"  # type: ignore[operator]
        services.wait_until(lambda: part.stat().st_size == 15, 10, "the interrupted PATCH's bytes")
        with session_scope() as session:
            session.get(Upload, upload_id).expires_at = utcnow() - timedelta(seconds=1)  # type: ignore[union-attr]
        assert http.head(location, headers=TUS).status_code == 404
        assert expire_uploads(settings) >= 1
        assert not part.exists()
        with session_scope() as session:
            assert session.get(Upload, upload_id) is None


def _upload(
    http: httpx.Client, data: bytes, *, pieces: int = 1, filename: str = "clip.mp4"
) -> dict[str, Any]:
    """A finished upload of `data`, sent in `pieces` PATCHes: its view."""
    location = _create(http, len(data), filename)
    step = -(-len(data) // pieces)
    for start in range(0, len(data), step):
        sent = http.patch(
            location, headers={**OCTETS, "Upload-Offset": str(start)}, content=data[start : start + step]
        )
        assert sent.status_code == 204, sent.text
    view: dict[str, Any] = http.get(location).json()
    assert view["state"] == "complete"
    return view


def _stored_bytes(http: httpx.Client) -> int:
    return int(http.get("/v1/usage").json()["quotas"]["output_bytes"]["usage"])


def test_the_same_bytes_are_stored_once_per_tenant(
    api_process: tuple[str, int], make_key: KeyMaker, clip: Path
) -> None:
    url, _ = api_process
    data = clip.read_bytes()
    tenant, other_tenant = f"dd-{uuid.uuid4().hex[:8]}", f"dd-{uuid.uuid4().hex[:8]}"
    with httpx.Client(base_url=url, headers=make_key(tenant), timeout=30) as http:
        # Hashed as the bytes arrive (one request), then by reading the part file (a resumed upload).
        first = _upload(http, data, filename="a.mp4")
        second = _upload(http, data, pieces=3, filename="b.mp4")
        assert second["stored_uri"] == first["stored_uri"] and second["uri"] != first["uri"]
        stored = Path(parse_file_uri(first["stored_uri"]))
        uploads_dir = stored.parent.parent
        assert [p.name for p in uploads_dir.iterdir()] == [first["id"]], "stored once"
        settings = Settings()
        assert not (settings.upload_dir / tenant / f"{second['id']}.part").exists()  # type: ignore[operator]
        assert _stored_bytes(http) == len(data)
        for view in (first, second):
            job = http.post("/v1/jobs", json=job_body(input=view["uri"]))
            assert job.status_code == 201 and job.json()["spec"]["input"] == first["stored_uri"], job.text
        different = _upload(http, data[:-1] + bytes([data[-1] ^ 1]), filename="c.mp4")
        assert different["stored_uri"] != first["stored_uri"]
        assert _stored_bytes(http) == 2 * len(data)
    with httpx.Client(base_url=url, headers=make_key(other_tenant), timeout=30) as other:
        theirs = _upload(other, data, filename="a.mp4")
        assert (
            theirs["stored_uri"] != first["stored_uri"]
            and f"/tenants/{other_tenant}/" in theirs["stored_uri"]
        )
        assert Path(parse_file_uri(theirs["stored_uri"])).read_bytes() == data
        assert _stored_bytes(other) == len(data)
    with httpx.Client(base_url=url, headers=make_key(tenant), timeout=30) as http:
        # Deleting one upload keeps the object the other still references, and its bytes.
        assert http.delete(f"/v1/uploads/{first['id']}", headers=TUS).status_code == 204
        assert stored.read_bytes() == data and _stored_bytes(http) == 2 * len(data)
        assert http.post("/v1/jobs", json=job_body(input=first["uri"])).status_code == 422
        assert http.post("/v1/jobs", json=job_body(input=second["uri"])).status_code == 201
        # A third upload of the same bytes still finds the object through the remaining reference.
        third = _upload(http, data, filename="d.mp4")
        assert third["stored_uri"] == first["stored_uri"]
        for view in (second, third):
            assert http.delete(f"/v1/uploads/{view['id']}", headers=TUS).status_code == 204
        assert not stored.exists() and _stored_bytes(http) == len(data)
    assert Path(parse_file_uri(theirs["stored_uri"])).read_bytes() == data  # the other tenant's is its own


def test_uploads_count_against_the_stored_bytes_quota(
    api_process: tuple[str, int], make_key: KeyMaker
) -> None:
    url, _ = api_process
    tenant = f"uq-{uuid.uuid4().hex[:8]}"
    headers = make_key(tenant)
    with session_scope() as session:
        session.query(Tenant).filter_by(name=tenant).one().settings = {"quotas": {"output_bytes": 2500}}
    data = random.Random(5).randbytes(1000)
    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        kept = _upload(http, data)
        assert _stored_bytes(http) == 1000
        over = http.post("/v1/uploads", headers={**TUS, "Upload-Length": "1501"})
        assert over.status_code == 429 and over.headers["Retry-After"], over.text
        problem = over.json()
        assert problem["type"].endswith("/quota-exceeded")
        assert (problem["quota"], problem["usage"], problem["limit"]) == ("output_bytes", 1000, 2500)
        assert http.post("/v1/uploads", headers={**TUS, "Upload-Length": "1500"}).status_code == 201
        assert http.delete(f"/v1/uploads/{kept['id']}", headers=TUS).status_code == 204
        assert _stored_bytes(http) == 0
        assert http.post("/v1/uploads", headers={**TUS, "Upload-Length": "2500"}).status_code == 201
        # Retention deleting a job's uploaded input takes its bytes off, and the uploads of that content.
        used = _upload(http, data)
        twin = _upload(http, data, pieces=2)
        assert _stored_bytes(http) == 1000
        job = http.post("/v1/jobs", json=job_body(input=used["uri"]))
        assert job.status_code == 201, job.text
        with session_scope() as session:
            row = session.get(Job, job.json()["id"])
            assert row is not None
            row.inputs_expire_at = utcnow() - timedelta(seconds=1)
        done = [d for d in retention.sweep(Settings()) if d.job_id == job.json()["id"]]
        assert [d.kind for d in done] == ["input"] and done[0].error is None
        assert set(done[0].uris[1:]) == {used["uri"], twin["uri"]}
        assert _stored_bytes(http) == 0
        assert not Path(parse_file_uri(used["stored_uri"])).exists()
        for view in (used, twin):
            assert http.get(f"/v1/uploads/{view['id']}").status_code == 404


def _pattern() -> bytes:
    return random.Random(12).randbytes(BLOCK)


def _body(pattern: bytes, start: int, end: int) -> Iterator[bytes]:
    """Bytes [start, end) of the endless repetition of `pattern`, generated on the fly."""
    position = start
    while position < end:
        offset = position % BLOCK
        piece = pattern[offset : offset + min(BLOCK - offset, end - position)]
        yield piece
        position += len(piece)


def _peak_rss(pid: int) -> int:
    """The process's peak resident set (VmHWM), in bytes."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


def test_large_upload_interrupted_halfway_resumes_with_flat_memory(
    api_process: tuple[str, int], make_key: KeyMaker
) -> None:
    url, pid = api_process
    headers = make_key()
    pattern = _pattern()
    with httpx.Client(base_url=url, headers=headers, timeout=120) as http:
        location = _create(http, BIG, "big.bin")
        _offset(http, location)
        before = _peak_rss(pid)
        started = time.monotonic()
        # The first request announces every byte but the client dies halfway: a raw socket, closed.
        host, port = url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port))) as sock:
            head = (
                f"PATCH {location} HTTP/1.1\r\nHost: {host}\r\nX-API-Key: {headers['X-API-Key']}\r\n"
                f"Tus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\n"
                f"Upload-Offset: 0\r\nContent-Length: {BIG}\r\n\r\n"
            )
            sock.sendall(head.encode())
            for piece in _body(pattern, 0, BIG // 2):
                sock.sendall(piece)
        # The server keeps what reached it; wait until its request has ended and released the upload.
        offset, previous = -1, -2
        while offset != previous:
            time.sleep(0.3)
            previous, offset = offset, _offset(http, location)
        assert BIG // 4 < offset <= BIG // 2
        while True:
            resumed = http.patch(
                location,
                headers={**OCTETS, "Upload-Offset": str(offset), "Content-Length": str(BIG - offset)},
                content=_body(pattern, offset, BIG),
            )
            if resumed.status_code != 409:
                break
            time.sleep(0.2)
        elapsed = time.monotonic() - started
        assert resumed.status_code == 204, resumed.text
        assert resumed.headers["Upload-Offset"] == str(BIG)
        view = http.get(location).json()
        growth = _peak_rss(pid) - before
        mib = 1024**2
        print(
            f"\nupload of {BIG / mib:.0f} MiB (interrupted at {offset / mib:.0f} MiB): {elapsed:.1f} s, "
            f"{BIG / elapsed / mib:.0f} MiB/s; API peak RSS {before / mib:.1f} MiB -> +{growth / mib:.1f} MiB"
        )
        assert growth < 48 * 1024**2, f"the API's peak memory grew by {growth / 1024**2:.1f} MiB"
    stored = Path(parse_file_uri(view["stored_uri"]))
    assert stored.stat().st_size == BIG
    with stored.open("rb") as handle:
        for expected in _body(pattern, 0, BIG):
            assert handle.read(len(expected)) == expected
    stored.unlink()


def test_presigned_upload_goes_straight_to_s3(
    api_settings: Settings, make_key: KeyMaker, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc, endpoint = services.start_moto()
    try:
        for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}.items():
            monkeypatch.setenv(name, value)
        reset_backends()
        s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
        s3.create_bucket(Bucket="media-out")
        settings = api_settings.model_copy(
            update={"output_root": "s3://media-out", "s3_endpoint_url": endpoint}
        )
        tenant = f"ps-{uuid.uuid4().hex[:8]}"
        with TestClient(create_app(settings)) as client:
            answer = client.post(
                "/v1/uploads/presign", json={"filename": "in.mp4", "size": 5}, headers=make_key(tenant)
            )
            assert answer.status_code == 201, answer.text
            body = answer.json()
            assert (
                body["uri"].startswith(f"s3://media-out/tenants/{tenant}/uploads/")
                and body["method"] == "PUT"
            )
            put = httpx.put(body["url"], content=b"hello", headers=body["headers"], timeout=10)
            assert put.status_code == 200, put.text
            bucket, _, key = body["uri"].removeprefix("s3://").partition("/")
            assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"hello"
            # A resumable upload is staged locally, then published to the S3 output root.
            headers = {**make_key(tenant), **TUS}
            created = client.post("/v1/uploads", headers={**headers, "Upload-Length": "6"})
            location = created.headers["Location"]
            octets = {**headers, "Content-Type": "application/offset+octet-stream"}
            assert (
                client.patch(location, headers={**octets, "Upload-Offset": "0"}, content=b"abc").status_code
                == 204
            )
            assert (
                client.patch(location, headers={**octets, "Upload-Offset": "3"}, content=b"def").status_code
                == 204
            )
            stored = client.get(location, headers=headers).json()["stored_uri"]
            assert stored.startswith(f"s3://media-out/tenants/{tenant}/uploads/")
            bucket, _, key = stored.removeprefix("s3://").partition("/")
            assert s3.get_object(Bucket=bucket, Key=key)["Body"].read() == b"abcdef"
        with TestClient(create_app(api_settings)) as client:
            local = client.post(
                "/v1/uploads/presign", json={"filename": "in.mp4", "size": 5}, headers=make_key()
            )
            assert local.status_code == 409 and "resumable" in local.json()["detail"]
    finally:
        services.stop(proc)
        reset_backends()

"""S3Storage against moto's standalone S3 server, spoken to over HTTP by boto3."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import boto3
import pytest

from framefleet.config import Settings
from framefleet.core.failures import FailureClass
from framefleet.storage import backend_for, join_uri, reset_backends
from framefleet.storage.base import StorageError, StorageNotFound, StorageUnavailable
from framefleet.storage.s3 import S3Storage
from tests import services

pytestmark = pytest.mark.integration

REGION = "us-east-1"


@pytest.fixture(scope="module")
def moto_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A moto S3 server on a free port, with throwaway credentials in the environment."""
    home = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", REGION)
        env.setenv("AWS_REGION", REGION)
        # Keep any real AWS configuration of the machine out of the test.
        env.setenv("AWS_CONFIG_FILE", str(home / "config"))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            env.delenv(name, raising=False)
        proc, endpoint = services.start_moto()
        try:
            yield endpoint
        finally:
            services.stop(proc)


@pytest.fixture()
def bucket(moto_endpoint: str) -> str:
    name = f"ff-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name=REGION).create_bucket(Bucket=name)
    return name


@pytest.fixture()
def store(moto_endpoint: str) -> S3Storage:
    return S3Storage(moto_endpoint, REGION)


def test_put_fetch_exists_delete(store: S3Storage, bucket: str, tmp_path: Path) -> None:
    local = tmp_path / "out.mp4"
    local.write_bytes(os.urandom(200_000))
    uri = f"s3://{bucket}/jobs/j1/out.mp4"
    assert not store.exists(uri)
    assert store.put(local, uri) == 200_000
    assert store.exists(uri)
    head = store.client.head_object(Bucket=bucket, Key="jobs/j1/out.mp4")
    assert head["ContentLength"] == 200_000
    assert head["ContentType"] == "video/mp4"

    workdir = tmp_path / "work"
    got = store.fetch(uri, workdir)
    assert got == workdir / "out.mp4"
    assert got.read_bytes() == local.read_bytes()
    assert [p.name for p in workdir.iterdir()] == ["out.mp4"]  # no temp file left
    assert store.fetch(uri, workdir, name="input.mp4") == workdir / "input.mp4"

    store.delete(uri)
    assert not store.exists(uri)
    store.delete(uri)  # deleting a missing key is fine


def test_put_move_consumes_the_local_file(store: S3Storage, bucket: str, tmp_path: Path) -> None:
    local = tmp_path / "moved.webm"
    local.write_bytes(b"w" * 500)
    assert store.put(local, f"s3://{bucket}/moved.webm", move=True) == 500
    assert not local.exists()
    assert store.client.head_object(Bucket=bucket, Key="moved.webm")["ContentType"] == "video/webm"


def test_large_files_use_multipart(moto_endpoint: str, bucket: str, tmp_path: Path) -> None:
    mib = 1024 * 1024
    store = S3Storage(moto_endpoint, REGION, multipart_threshold=5 * mib, multipart_chunksize=5 * mib)
    local = tmp_path / "big.bin"
    local.write_bytes(os.urandom(11 * mib))
    uri = f"s3://{bucket}/big.bin"
    assert store.put(local, uri) == 11 * mib
    etag = store.client.head_object(Bucket=bucket, Key="big.bin")["ETag"]
    assert etag.strip('"').endswith("-3")  # three parts: a multipart upload, completed as one object
    assert store.fetch(uri, tmp_path / "work").read_bytes() == local.read_bytes()
    # No unfinished multipart upload is left behind.
    assert store.client.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


def test_missing_key_is_not_found(store: S3Storage, bucket: str, tmp_path: Path) -> None:
    workdir = tmp_path / "work"
    with pytest.raises(StorageNotFound) as info:
        store.fetch(f"s3://{bucket}/nope.mp4", workdir)
    assert info.value.failure_class is FailureClass.input_invalid
    assert list(workdir.iterdir()) == []
    assert not store.exists(f"s3://{bucket}/nope.mp4")


def test_missing_bucket(store: S3Storage, moto_endpoint: str, tmp_path: Path) -> None:
    local = tmp_path / "x.mp4"
    local.write_bytes(b"x")
    uri = "s3://no-such-bucket-ff/x.mp4"
    with pytest.raises(StorageNotFound, match="not found"):
        store.put(local, uri)
    with pytest.raises(StorageNotFound):
        store.fetch(uri, tmp_path / "work")
    assert not store.exists(uri)
    with pytest.raises(StorageNotFound):
        store.delete(uri)
    with pytest.raises(StorageUnavailable, match="does not exist"):
        S3Storage(moto_endpoint, REGION, probe_bucket="no-such-bucket-ff").check()


def test_check(moto_endpoint: str, bucket: str) -> None:
    # check() answers None when the store is reachable (and the probe bucket exists), else raises.
    assert S3Storage(moto_endpoint, REGION).check() is None
    assert S3Storage(moto_endpoint, REGION, probe_bucket=bucket).check() is None
    with pytest.raises(StorageUnavailable, match="does not exist"):
        S3Storage(moto_endpoint, REGION, probe_bucket="no-such-bucket").check()


def test_unreachable_endpoint_is_unavailable(tmp_path: Path, moto_endpoint: str) -> None:
    dead = f"http://127.0.0.1:{services.free_port()}"
    store = S3Storage(dead, REGION, connect_timeout=1, max_attempts=1)
    local = tmp_path / "x.mp4"
    local.write_bytes(b"x")
    for action in (
        lambda: store.fetch("s3://some-bucket/x.mp4", tmp_path / "work"),
        lambda: store.put(local, "s3://some-bucket/x.mp4"),
        lambda: store.exists("s3://some-bucket/x.mp4"),
        lambda: store.delete("s3://some-bucket/x.mp4"),
        store.check,
    ):
        with pytest.raises(StorageUnavailable) as info:
            action()
        assert info.value.failure_class is FailureClass.storage_unavailable
    assert list((tmp_path / "work").iterdir()) == []


def test_backend_for_and_join_uri_end_to_end(moto_endpoint: str, bucket: str, tmp_path: Path) -> None:
    settings = Settings(
        data_dir=tmp_path,
        s3_endpoint_url=moto_endpoint,
        s3_region=REGION,
        output_root=f"s3://{bucket}/outputs",
    )
    reset_backends()
    try:
        backend = backend_for(settings.output_root, settings)
        assert isinstance(backend, S3Storage)
        assert backend.probe_bucket == bucket
        backend.check()
        uri = join_uri(settings.output_root, "job-42", "main.mp4")
        assert uri == f"s3://{bucket}/outputs/job-42/main.mp4"
        local = tmp_path / "main.mp4"
        local.write_bytes(b"m" * 1234)
        assert backend.put(local, uri) == 1234
        assert backend_for(uri, settings) is backend
        assert backend.fetch(uri, tmp_path / "work").read_bytes() == b"m" * 1234
    finally:
        reset_backends()


def test_bad_uri_is_input_invalid(store: S3Storage, tmp_path: Path) -> None:
    with pytest.raises(StorageError) as info:
        store.fetch("s3://Bad_Bucket/x", tmp_path)
    assert info.value.failure_class is FailureClass.input_invalid

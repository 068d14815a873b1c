"""Backend selection, URI joining, S3 URI parsing and error mapping (pure logic)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from boto3.exceptions import S3UploadFailedError
from botocore.exceptions import (
    ClientError,
    ConnectTimeoutError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from framefleet.config import Settings
from framefleet.core.failures import RETRYABLE, FailureClass
from framefleet.storage import backend_for, join_uri, reset_backends
from framefleet.storage.base import (
    StorageBackend,
    StorageDenied,
    StorageError,
    StorageNotFound,
    StorageTooLarge,
    StorageUnavailable,
    safe_filename,
)
from framefleet.storage.http import HttpStorage
from framefleet.storage.local import LocalStorage
from framefleet.storage.s3 import S3Storage, map_s3_error, parse_s3_uri


@pytest.fixture(autouse=True)
def fresh_cache() -> Iterator[None]:
    reset_backends()
    yield
    reset_backends()


def settings_for(tmp_path: Path, **kwargs: object) -> Settings:
    return Settings(data_dir=tmp_path, storage_roots=[tmp_path / "media"], **kwargs)  # type: ignore[arg-type]


def test_error_classes() -> None:
    assert StorageNotFound("x").failure_class is FailureClass.input_invalid
    assert StorageDenied("x").failure_class is FailureClass.storage_denied
    assert StorageUnavailable("x").failure_class is FailureClass.storage_unavailable
    assert StorageUnavailable("x").failure_class in RETRYABLE
    assert StorageTooLarge("x").failure_class is FailureClass.input_invalid
    error = StorageError("disk full", failure_class=FailureClass.resource_exhausted)
    assert error.failure_class is FailureClass.resource_exhausted
    assert str(error) == error.message == "disk full"
    assert StorageError("x").failure_class is FailureClass.internal


def test_backend_for_picks_by_scheme_and_caches(tmp_path: Path) -> None:
    settings = settings_for(tmp_path, http_allow_private=True, http_max_bytes=123, http_timeout_seconds=7)
    local = backend_for("file:///x/y.mp4", settings)
    assert isinstance(local, LocalStorage)
    assert local.roots == ((tmp_path / "media").resolve(),)
    assert backend_for("FILE:///other.mp4", settings) is local
    http = backend_for("https://example.com/a.mp4", settings)
    assert isinstance(http, HttpStorage)
    assert (http.allow_private, http.max_bytes, http.timeout) == (True, 123, 7)
    assert backend_for("http://example.com/a.mp4", settings) is http
    s3 = backend_for("s3://bucket/key", settings)
    assert isinstance(s3, S3Storage)
    assert s3.probe_bucket is None  # the output root is local
    for backend in (local, http, s3):
        assert isinstance(backend, StorageBackend)
    # Different settings get a different instance.
    other = settings_for(tmp_path / "b")
    assert backend_for("file:///x", other) is not local


@pytest.mark.parametrize(
    "uri", ["ftp://host/x", "sftp://host/x", "/abs/path.mp4", "relative.mp4", "c:\\x.mp4"]
)
def test_unknown_scheme_is_denied(tmp_path: Path, uri: str) -> None:
    with pytest.raises(StorageDenied):
        backend_for(uri, settings_for(tmp_path))


def test_join_uri() -> None:
    assert (
        join_uri("file:///srv/media/outputs", "job-1", "main.mp4")
        == "file:///srv/media/outputs/job-1/main.mp4"
    )
    assert (
        join_uri("file:///srv/media/outputs/", "job-1", "main.mp4")
        == "file:///srv/media/outputs/job-1/main.mp4"
    )
    assert join_uri("file:///", "a.mp4") == "file:///a.mp4"
    assert join_uri("file:///srv/out", "my clip #1.mp4") == "file:///srv/out/my%20clip%20%231.mp4"
    assert join_uri("file:///srv/out", "hls/720p/index.m3u8") == "file:///srv/out/hls/720p/index.m3u8"
    assert join_uri("s3://bucket/prefix", "job-1", "main.mp4") == "s3://bucket/prefix/job-1/main.mp4"
    assert join_uri("s3://bucket", "job-1", "a b.mp4") == "s3://bucket/job-1/a b.mp4"
    assert join_uri("s3://bucket/p/") == "s3://bucket/p/"


def test_join_uri_round_trips_through_local_storage(tmp_path: Path) -> None:
    store = LocalStorage([tmp_path])
    uri = join_uri(tmp_path.as_uri(), "job 1", "out #1 é.mp4")
    assert store.path_for(uri, for_output=True) == tmp_path.resolve() / "job 1" / "out #1 é.mp4"


@pytest.mark.parametrize("part", ["..", ".", "", "a/../b", "a//b", "/abs", "a\\b", "a\x00b", "a\nb"])
def test_join_uri_refuses_bad_parts(part: str) -> None:
    with pytest.raises(StorageDenied):
        join_uri("file:///srv/out", part)
    with pytest.raises(StorageDenied):
        join_uri("s3://bucket/out", part)


def test_join_uri_unknown_scheme() -> None:
    with pytest.raises(StorageDenied):
        join_uri("gopher://x/y", "a")


def test_parse_s3_uri() -> None:
    assert parse_s3_uri("s3://my-bucket/a/b c.mp4") == ("my-bucket", "a/b c.mp4")
    assert parse_s3_uri("S3://my.bucket/k?x#y") == ("my.bucket", "k?x#y")
    for bad in ("s3://Bad_Bucket/k", "s3://ab/k", "s3://bucket", "s3://bucket/", "s3:///k", "s3://a..b/k"):
        with pytest.raises(StorageError) as info:
            parse_s3_uri(bad)
        assert info.value.failure_class is FailureClass.input_invalid
    with pytest.raises(StorageDenied):
        parse_s3_uri("s3://bucket/a\nb")
    with pytest.raises(StorageDenied):
        parse_s3_uri("https://bucket/k")


def client_error(code: str, status: int, op: str = "GetObject") -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"{code} message"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        op,
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (client_error("NoSuchKey", 404), StorageNotFound),
        (client_error("404", 404, "HeadObject"), StorageNotFound),
        (client_error("NoSuchBucket", 404), StorageNotFound),
        (client_error("AccessDenied", 403), StorageDenied),
        (client_error("403", 403, "HeadObject"), StorageDenied),
        (client_error("InvalidAccessKeyId", 403), StorageDenied),
        (client_error("SignatureDoesNotMatch", 403), StorageDenied),
        (client_error("InternalError", 500), StorageUnavailable),
        (client_error("ServiceUnavailable", 503), StorageUnavailable),
        (client_error("SlowDown", 503), StorageUnavailable),
        (client_error("BadGateway", 502), StorageUnavailable),
        (client_error("EntityTooLarge", 400), StorageError),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), StorageUnavailable),
        (ConnectTimeoutError(endpoint_url="http://10.0.0.1"), StorageUnavailable),
        (ReadTimeoutError(endpoint_url="http://10.0.0.1"), StorageUnavailable),
        (NoCredentialsError(), StorageDenied),
    ],
)
def test_map_s3_error(error: Exception, expected: type[StorageError]) -> None:
    mapped = map_s3_error(error, "fetch s3://b/k")
    assert type(mapped) is expected
    assert mapped.message.startswith("fetch s3://b/k: ")


def test_map_s3_error_unwraps_upload_wrapper() -> None:
    try:
        try:
            raise client_error("AccessDenied", 403, "PutObject")
        except ClientError as exc:
            raise S3UploadFailedError(f"Failed to upload: {exc}")  # noqa: B904 - boto3 raises it this way
    except S3UploadFailedError as wrapped:
        assert isinstance(map_s3_error(wrapped, "put"), StorageDenied)
    assert (
        map_s3_error(client_error("EntityTooLarge", 400), "put").failure_class is FailureClass.input_invalid
    )


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("clip.mp4", "clip.mp4"),
        ("", "dl"),
        ("..", "dl"),
        (".", "dl"),
        (".hidden", "dl.hidden"),
        ("a\\b.mp4", "b.mp4"),
        ("x\x00y.mp4", "xy.mp4"),
        ("dir/name.mp4", "name.mp4"),
    ],
)
def test_safe_filename(name: str, expected: str) -> None:
    assert safe_filename(name, "dl") == expected

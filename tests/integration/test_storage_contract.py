"""The storage contract, one suite for every backend: local folders, S3 (moto), Azure Blob (Azurite) and
GCS (fake-gcs-server), each spoken to over its real protocol. A backend that is added joins this suite."""

from __future__ import annotations

import hashlib
import os
import threading
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
from azure.storage.blob import BlobServiceClient
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage as gcs

from framefleet.core.failures import FailureClass
from framefleet.storage import join_uri
from framefleet.storage.azure import AzureBlobStorage
from framefleet.storage.base import (
    StorageBackend,
    StorageDenied,
    StorageError,
    StorageNotFound,
    StorageUnavailable,
)
from framefleet.storage.gcs import GcsStorage
from framefleet.storage.local import LocalStorage
from framefleet.storage.s3 import S3Storage
from tests import services

pytestmark = pytest.mark.integration

MIB = 1024 * 1024
# Large enough that every backend splits it (multipart, blocks, resumable chunks) under the sizes below.
BIG = 6 * MIB


@dataclass
class Store:
    backend: StorageBackend
    base: str  # a container/bucket (or folder) URI that exists and is empty
    missing_container: str  # the same kind of URI for a container/bucket that does not exist
    unreachable: Callable[[], StorageBackend]  # the same backend pointed at a closed port


@pytest.fixture(scope="module")
def moto_s3(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("aws")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ACCESS_KEY_ID", "testing")
        env.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        env.setenv("AWS_DEFAULT_REGION", "us-east-1")
        env.setenv("AWS_CONFIG_FILE", str(home / "config"))
        env.setenv("AWS_SHARED_CREDENTIALS_FILE", str(home / "credentials"))
        for name in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
            env.delenv(name, raising=False)
        proc, endpoint = services.start_moto()
        try:
            yield endpoint
        finally:
            services.stop(proc)


@pytest.fixture(scope="module")
def azurite() -> Iterator[str]:
    proc, connection = services.start_azurite()
    try:
        yield connection
    finally:
        services.stop(proc)


@pytest.fixture(scope="module")
def fake_gcs() -> Iterator[str]:
    proc, endpoint = services.start_fake_gcs()
    try:
        yield endpoint
    finally:
        services.stop(proc)


def _dead_endpoint() -> str:
    return f"http://127.0.0.1:{services.free_port()}"


def _local(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    root = tmp_path / "root"
    (root / "area").mkdir(parents=True)
    return Store(
        LocalStorage([root]),
        (root / "area").as_uri(),
        (tmp_path / "elsewhere").as_uri(),
        lambda: LocalStorage([tmp_path / "gone"]),
    )


def _s3(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    endpoint = request.getfixturevalue("moto_s3")
    bucket = f"ff-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    small = {"multipart_threshold": 5 * MIB, "multipart_chunksize": 5 * MIB}
    return Store(
        S3Storage(endpoint, **small),
        f"s3://{bucket}",
        f"s3://no-{bucket}",
        lambda: S3Storage(_dead_endpoint(), connect_timeout=1, max_attempts=1),
    )


def _azure(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    connection = request.getfixturevalue("azurite")
    container = f"ff-{uuid.uuid4().hex[:12]}"
    BlobServiceClient.from_connection_string(connection).create_container(container)
    dead = connection.replace(connection.split("BlobEndpoint=")[1].split("/devstore")[0], _dead_endpoint())
    return Store(
        AzureBlobStorage(connection_string=connection, max_single_put_size=MIB, max_block_size=MIB),
        f"azure://{container}",
        f"azure://no-{container}",
        lambda: AzureBlobStorage(connection_string=dead, connect_timeout=1, max_attempts=1),
    )


def _gcs(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    endpoint = request.getfixturevalue("fake_gcs")
    bucket = f"ff-{uuid.uuid4().hex[:12]}"
    client = gcs.Client(
        project="test", credentials=AnonymousCredentials(), client_options={"api_endpoint": endpoint}
    )
    client.create_bucket(bucket)
    return Store(
        GcsStorage(endpoint_url=endpoint, resumable_threshold=MIB, chunk_size=MIB),
        f"gs://{bucket}",
        f"gs://no-{bucket}",
        lambda: GcsStorage(endpoint_url=_dead_endpoint(), connect_timeout=1, retry_seconds=2),
    )


@pytest.fixture(params=[_local, _s3, _azure, _gcs], ids=["local", "s3", "azure", "gcs"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return request.param(request, tmp_path)


def _file(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def test_put_fetch_exists_delete(store: Store, tmp_path: Path) -> None:
    data = os.urandom(300_000)
    uri = join_uri(store.base, "jobs", "j1", "out.mp4")
    assert not store.backend.exists(uri)
    assert store.backend.put(_file(tmp_path / "out.mp4", data), uri) == len(data)
    assert store.backend.exists(uri)
    got = store.backend.fetch(uri, tmp_path / "work", name="input.mp4")
    assert got.read_bytes() == data
    if not isinstance(store.backend, LocalStorage):  # local inputs are read in place
        assert sorted(p.name for p in (tmp_path / "work").iterdir()) == ["input.mp4"]  # no temporaries
    store.backend.delete(uri)
    assert not store.backend.exists(uri)
    store.backend.delete(uri)  # a missing object is not an error


def test_put_move_consumes_the_local_file(store: Store, tmp_path: Path) -> None:
    local = _file(tmp_path / "moved.webm", b"w" * 5000)
    uri = join_uri(store.base, "moved.webm")
    assert store.backend.put(local, uri, move=True) == 5000
    assert not local.exists()
    assert store.backend.fetch(uri, tmp_path / "work").read_bytes() == b"w" * 5000


def test_large_object_streams_both_ways(store: Store, tmp_path: Path) -> None:
    data = os.urandom(BIG)
    uri = join_uri(store.base, "big.bin")
    assert store.backend.put(_file(tmp_path / "big.bin", data), uri) == BIG
    assert store.backend.fetch(uri, tmp_path / "work").read_bytes() == data


def test_fetch_hashes_the_content_as_it_lands(store: Store, tmp_path: Path) -> None:
    """The input's fingerprint comes with the fetch: multipart, parallel downloads hash in order."""
    data = os.urandom(BIG)
    uri = join_uri(store.base, "hashed.bin")
    store.backend.put(_file(tmp_path / "hashed.bin", data), uri)
    digest = hashlib.sha256()
    got = store.backend.fetch(uri, tmp_path / "work", digest=digest)
    assert got.read_bytes() == data
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()


def test_a_reader_never_sees_a_partial_object(store: Store, tmp_path: Path) -> None:
    """While a large upload is in flight (in parts, blocks or chunks), the object is absent or whole."""
    data = os.urandom(BIG)
    uri = join_uri(store.base, "atomic.bin")
    local = _file(tmp_path / "atomic.bin", data)
    errors: list[BaseException] = []

    def upload() -> None:
        try:
            store.backend.put(local, uri)
        except BaseException as exc:
            errors.append(exc)

    writer = threading.Thread(target=upload)
    writer.start()
    looks = 0
    while writer.is_alive() and not store.backend.exists(uri):
        looks += 1
    first_seen = store.backend.fetch(uri, tmp_path / "seen").read_bytes()
    writer.join()
    assert errors == []
    assert looks > 0, "the upload ended before it could be watched"
    assert first_seen == data


def test_create_only_refuses_an_existing_object_and_keeps_it(store: Store, tmp_path: Path) -> None:
    uri = join_uri(store.base, "once", "main.mp4")
    first = os.urandom(2000)
    assert store.backend.put(_file(tmp_path / "a", first), uri, replace=False) == 2000
    for size in (1000, BIG):  # one request, and the multi-part path whose last request is conditional
        second = _file(tmp_path / f"b{size}", os.urandom(size))
        with pytest.raises(StorageDenied, match="already exists") as info:
            store.backend.put(second, uri, replace=False, move=True)
        assert info.value.failure_class is FailureClass.storage_denied
        assert second.exists(), "a refused move leaves the local file where it was"
    assert store.backend.fetch(uri, tmp_path / "work").read_bytes() == first
    # Replacing is allowed when asked for.
    third = os.urandom(3000)
    assert store.backend.put(_file(tmp_path / "c", third), uri, replace=True) == 3000
    assert store.backend.fetch(uri, tmp_path / "work2").read_bytes() == third


def test_missing_object_is_not_found(store: Store, tmp_path: Path) -> None:
    uri = join_uri(store.base, "nope.mp4")
    with pytest.raises(StorageNotFound) as info:
        store.backend.fetch(uri, tmp_path / "work")
    assert info.value.failure_class is FailureClass.input_invalid
    assert not (tmp_path / "work").exists() or list((tmp_path / "work").iterdir()) == []
    assert not store.backend.exists(uri)


def test_missing_container_or_bucket(store: Store, tmp_path: Path) -> None:
    uri = join_uri(store.missing_container, "x.mp4")
    with pytest.raises((StorageNotFound, StorageDenied)):
        store.backend.fetch(uri, tmp_path / "work")
    if not isinstance(store.backend, LocalStorage):
        # An object store needs the bucket to exist; nothing creates one on the way.
        assert not store.backend.exists(uri)
        with pytest.raises(StorageNotFound):
            store.backend.put(_file(tmp_path / "x.mp4", b"x"), uri)
        with pytest.raises(StorageNotFound):
            store.backend.delete(uri)


def test_dot_segments_and_control_characters_are_denied(store: Store, tmp_path: Path) -> None:
    local = _file(tmp_path / "x.mp4", b"x")
    for bad in ("a/../x.mp4", "a/./x.mp4", "a/x\n.mp4"):
        uri = f"{store.base}/{bad}"
        for action in (
            lambda u: store.backend.fetch(u, tmp_path / "work"),
            lambda u: store.backend.put(local, u),
            store.backend.exists,
            store.backend.delete,
        ):
            with pytest.raises(StorageDenied) as info:
                action(uri)
            assert info.value.failure_class is FailureClass.storage_denied


def test_check_and_unreachable_store(store: Store, tmp_path: Path) -> None:
    assert store.backend.check() is None
    dead = store.unreachable()
    with pytest.raises(StorageUnavailable) as info:
        dead.check()
    assert info.value.failure_class is FailureClass.storage_unavailable
    if not isinstance(dead, LocalStorage):
        uri = join_uri(store.base, "x.mp4")
        local = _file(tmp_path / "x.mp4", b"x")
        for action in (
            lambda: dead.fetch(uri, tmp_path / "work"),
            lambda: dead.put(local, uri),
            lambda: dead.exists(uri),
            lambda: dead.delete(uri),
        ):
            with pytest.raises(StorageUnavailable):
                action()
        assert list((tmp_path / "work").iterdir()) == []


def test_azure_wrong_key_is_denied(azurite: str, tmp_path: Path) -> None:
    """The one emulator here that checks signatures: a wrong account key is a denial, not an outage."""
    container = f"ff-{uuid.uuid4().hex[:12]}"
    BlobServiceClient.from_connection_string(azurite).create_container(container)
    key = services.AZURITE_KEY
    wrong = azurite.replace(key, key[:10] + ("A" if key[10] != "A" else "B") + key[11:])
    store = AzureBlobStorage(connection_string=wrong, max_attempts=1)
    uri = f"azure://{container}/x.mp4"
    with pytest.raises(StorageDenied) as info:
        store.put(_file(tmp_path / "x.mp4", b"x"), uri)
    assert info.value.failure_class is FailureClass.storage_denied
    with pytest.raises(StorageDenied):
        store.fetch(uri, tmp_path / "work")


def test_bad_container_or_bucket_names_are_input_invalid(tmp_path: Path) -> None:
    azure = AzureBlobStorage(account_url="http://127.0.0.1:1/devstoreaccount1")
    google = GcsStorage(endpoint_url="http://127.0.0.1:1")
    for backend, uri in ((azure, "az://Bad_Box/x"), (azure, "azure://a--b/x"), (google, "gs://Bad!/x")):
        with pytest.raises(StorageError) as info:
            backend.fetch(uri, tmp_path)
        assert info.value.failure_class is FailureClass.input_invalid


def _service_account() -> dict[str, str]:
    """A throwaway service-account key: it signs URLs locally and is never sent anywhere."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    return {
        "type": "service_account",
        "project_id": "test",
        "private_key_id": "k1",
        "private_key": pem,
        "client_email": "signer@test.iam.gserviceaccount.com",
        "client_id": "1",
        "token_uri": "http://127.0.0.1:9/token",
    }


def _gcs_signing(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    """GCS with objects written anonymously (the emulator) and URLs signed by a service account's key."""
    store = _gcs(request, tmp_path)
    endpoint = request.getfixturevalue("fake_gcs")
    signer = GcsStorage(endpoint_url=endpoint, credentials_info=_service_account())
    store.backend = _SignedBy(store.backend, signer)
    return store


@dataclass
class _SignedBy:
    """A GCS store whose reads and writes go unauthenticated to the emulator, its URLs signed by `signer`."""

    inner: Any
    signer: GcsStorage
    scheme: str = "gs"

    def __getattr__(self, name: str) -> Any:
        return getattr(self.signer if name.startswith("presign") else self.inner, name)


@pytest.fixture(params=[_s3, _azure, _gcs_signing], ids=["s3", "azure", "gcs"])
def signing_store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    return request.param(request, tmp_path)


def test_presigned_urls_read_ranges_and_take_one_put(signing_store: Store, tmp_path: Path) -> None:
    backend: Any = signing_store.backend
    data = os.urandom(300_000)
    uri = join_uri(signing_store.base, "shared/out.mp4")
    backend.put(_file(tmp_path / "out.mp4", data), uri)
    # fake-gcs-server serves path-style object URLs only under the public host's name (it checks no
    # signatures either: Azurite is the store here that verifies what was signed).
    host = {"Host": "storage.googleapis.com"} if isinstance(backend, _SignedBy) else {}
    url = backend.presign_get(uri, expires_seconds=60)
    part = httpx.get(url, headers={**host, "Range": "bytes=100-199"}, timeout=10)
    assert part.status_code == 206 and part.content == data[100:200]
    target = join_uri(signing_store.base, "uploads/in.mp4")
    put_url, headers = backend.presign_put(target, expires_seconds=60, size=5)
    put = httpx.put(put_url, content=b"hello", headers={**host, **headers}, timeout=10)
    assert put.status_code in (200, 201), put.text
    assert backend.fetch(target, tmp_path / "got").read_bytes() == b"hello"

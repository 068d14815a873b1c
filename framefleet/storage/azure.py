"""Azure Blob Storage (azure://container/blob, or az://…) through the official SDK.

Files above `max_single_put_size` are uploaded as uncommitted blocks and become the blob only when the
block list is committed, last; smaller ones go up in a single Put Blob. Either way a reader sees the old
blob or the whole new one, never part of it. A create-only publish sends `If-None-Match: *` with that
final request, so the service refuses (409) to replace a blob that exists, atomically.
"""

from __future__ import annotations

import errno
import mimetypes
import os
import re
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from azure.core.exceptions import (
    AzureError,
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
    ServiceRequestError,
    ServiceResponseError,
)
from azure.storage.blob import BlobSasPermissions, BlobServiceClient, ContentSettings, generate_blob_sas

from framefleet.core.failures import FailureClass
from framefleet.storage.base import (
    Digest,
    StorageDenied,
    StorageError,
    StorageNotFound,
    StorageUnavailable,
    check_object_key,
    safe_filename,
    temp_path_in,
)

SCHEMES = ("azure", "az")
# 3-63 lowercase letters, digits and single hyphens, starting and ending with a letter or digit.
_CONTAINER = re.compile(r"^(?!.*--)[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")


def parse_azure_uri(uri: str) -> tuple[str, str]:
    """(container, blob) of an azure://container/blob (or az://) URI; the blob name is taken verbatim."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.lower() not in SCHEMES:
        raise StorageDenied(f"not an azure:// URI: {uri!r}")
    container, _, blob = rest.partition("/")
    if not _CONTAINER.match(container):
        raise StorageError(
            f"invalid container name {container!r} in {uri!r}", failure_class=FailureClass.input_invalid
        )
    return container, check_object_key(blob, uri)


def map_azure_error(exc: BaseException, what: str) -> StorageError:
    """The storage error for an Azure SDK failure while doing `what` (e.g. "fetch azure://c/b")."""
    if isinstance(exc, StorageError):
        return exc  # already ours, e.g. an unusable connection string found while making the client
    if isinstance(exc, ResourceNotFoundError):
        return StorageNotFound(f"{what}: not found ({getattr(exc, 'error_code', None) or exc.reason})")
    if isinstance(exc, ClientAuthenticationError):
        return StorageDenied(f"{what}: access denied ({exc.reason})")
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        detail = getattr(exc, "error_code", None) or exc.reason or f"HTTP {status}"
        if status in (401, 403):
            return StorageDenied(f"{what}: access denied ({detail})")
        if status >= 500 or status in (408, 429):
            return StorageUnavailable(f"{what}: store unavailable ({detail})")
        return StorageError(
            f"{what}: refused by the store ({detail})", failure_class=FailureClass.input_invalid
        )
    if isinstance(exc, (ServiceRequestError, ServiceResponseError, AzureError)):
        # Connection refused, DNS failure, timeouts, resets: all worth retrying later.
        return StorageUnavailable(f"{what}: {exc}")
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageError(f"{what}: {exc.strerror}", failure_class=FailureClass.resource_exhausted)
        return StorageError(f"{what}: {exc}")
    return StorageError(f"{what}: {exc}")


def _account_name(account_url: str) -> str:
    """The account an account URL names: the first host label, or the first path segment of an
    emulator's IP-style URL (http://127.0.0.1:10000/devstoreaccount1)."""
    parts = urlsplit(account_url)
    host = parts.hostname or ""
    if host == "localhost" or host.replace(".", "").isdigit() or ":" in host:
        return parts.path.strip("/").partition("/")[0]
    return host.partition(".")[0]


class AzureBlobStorage:
    """azure://container/blob storage, authenticated by a connection string, an account key or a SAS."""

    scheme = "azure"

    def __init__(
        self,
        *,
        connection_string: str | None = None,
        account_url: str | None = None,
        account_name: str | None = None,
        account_key: str | None = None,
        sas_token: str | None = None,
        probe_container: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 4,
        max_single_put_size: int = 64 * 1024**2,
        max_block_size: int = 16 * 1024**2,
        max_concurrency: int = 4,
    ) -> None:
        if not connection_string and not account_url:
            raise ValueError("Azure Blob storage needs a connection string or an account URL")
        self.connection_string = connection_string
        self.account_url = account_url
        self.account_name = account_name
        self.account_key = account_key
        self.sas_token = sas_token
        self.probe_container = probe_container
        self.max_concurrency = max_concurrency
        self._options: dict[str, Any] = {
            "connection_timeout": connect_timeout,
            "read_timeout": read_timeout,
            "retry_total": max_attempts - 1,
            "max_single_put_size": max_single_put_size,
            "max_block_size": max_block_size,
        }
        self._client: BlobServiceClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> BlobServiceClient:
        """The service client, created on first use (it is thread-safe; its creation is guarded)."""
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> BlobServiceClient:
        if self.connection_string:
            try:
                return BlobServiceClient.from_connection_string(self.connection_string, **self._options)
            except ValueError as exc:
                raise StorageDenied(f"unusable Azure connection string: {exc}") from None
        assert self.account_url is not None
        credential: Any = None
        if self.account_key:
            name = self.account_name or _account_name(self.account_url)
            credential = {"account_name": name, "account_key": self.account_key}
        elif self.sas_token:
            credential = self.sas_token.lstrip("?")
        # No credential at all: anonymous access, which public containers allow for reading.
        return BlobServiceClient(self.account_url, credential=credential, **self._options)

    def _signed_url(self, uri: str, permission: BlobSasPermissions, expires_seconds: int) -> str:
        """The blob's URL with a SAS token for `permission`; it needs the account key (a SAS of our own
        cannot sign another)."""
        container, blob = parse_azure_uri(uri)
        client = self.client
        key = getattr(client.credential, "account_key", None) or self.account_key
        if not key or not client.account_name:
            raise StorageDenied(
                "pre-signed Azure URLs need the account key (connection string or account key)"
            )
        token = generate_blob_sas(
            account_name=str(client.account_name),
            container_name=container,
            blob_name=blob,
            account_key=key,
            permission=permission,
            expiry=datetime.now(UTC) + timedelta(seconds=expires_seconds),
        )
        return f"{client.get_blob_client(container, blob).url}?{token}"

    def presign_get(self, uri: str, *, expires_seconds: int) -> str:
        """A URL that reads the blob (ranges included) without credentials until it expires."""
        return self._signed_url(uri, BlobSasPermissions(read=True), expires_seconds)

    def presign_put(self, uri: str, *, expires_seconds: int, size: int) -> tuple[str, dict[str, str]]:
        """A URL and the headers for one PUT creating the blob at `uri` until it expires."""
        url = self._signed_url(uri, BlobSasPermissions(create=True, write=True), expires_seconds)
        return url, {"x-ms-blob-type": "BlockBlob", "Content-Length": str(size)}

    def fetch(
        self, uri: str, workdir: Path, *, name: str | None = None, digest: Digest | None = None
    ) -> Path:
        """Stream the blob into `workdir` (temp name, then rename) and return the file's path.

        With `digest` the blob's chunks are written (and hashed) in order as they arrive; the SDK's
        parallel download needs a seekable target, so a hashed fetch is one stream."""
        container, blob = parse_azure_uri(uri)
        filename = safe_filename(name or blob.rsplit("/", 1)[-1], "object")
        tmp: Path | None = None
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            tmp = temp_path_in(workdir, filename)
            downloader = self.client.get_blob_client(container, blob).download_blob(
                max_concurrency=self.max_concurrency if digest is None else 1
            )
            with open(tmp, "wb") as handle:
                if digest is None:
                    downloader.readinto(handle)
                else:
                    for chunk in downloader.chunks():
                        digest.update(chunk)
                        handle.write(chunk)
            dest = workdir / filename
            os.replace(tmp, dest)
            return dest
        except BaseException as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            if isinstance(exc, StorageError) or not isinstance(exc, Exception):
                raise
            raise map_azure_error(exc, f"fetch {uri}") from exc

    def put(self, local: Path, uri: str, *, move: bool = False, replace: bool = True) -> int:
        """Upload `local` to `uri` (blocks committed last above the single-put size); with `replace=False`
        an existing blob makes it fail with StorageDenied and stays as it was."""
        container, blob = parse_azure_uri(uri)
        try:
            size = local.stat().st_size
        except OSError as exc:
            raise StorageError(f"local file {local} is not readable: {exc}") from None
        content_type, _ = mimetypes.guess_type(blob)
        try:
            with open(local, "rb") as data:
                self.client.get_blob_client(container, blob).upload_blob(
                    data,
                    length=size,
                    # overwrite=False sends If-None-Match: * with the request that makes the blob visible.
                    overwrite=replace,
                    content_settings=ContentSettings(content_type=content_type) if content_type else None,
                    max_concurrency=self.max_concurrency,
                )
        except ResourceExistsError as exc:
            if replace:
                raise map_azure_error(exc, f"put {uri}") from exc
            raise StorageDenied(f"{uri} already exists and this job may not replace it") from exc
        except Exception as exc:
            raise map_azure_error(exc, f"put {uri}") from exc
        if move:
            local.unlink(missing_ok=True)
        return size

    def exists(self, uri: str) -> bool:
        """Whether the blob exists; a missing container also answers False."""
        container, blob = parse_azure_uri(uri)
        try:
            return bool(self.client.get_blob_client(container, blob).exists())
        except Exception as exc:
            error = map_azure_error(exc, f"exists {uri}")
            if isinstance(error, StorageNotFound):
                return False
            raise error from exc

    def delete(self, uri: str) -> None:
        """Delete the blob (with its snapshots); a missing blob is fine, a missing container is not."""
        container, blob = parse_azure_uri(uri)
        try:
            self.client.get_blob_client(container, blob).delete_blob(delete_snapshots="include")
        except ResourceNotFoundError as exc:
            if getattr(exc, "error_code", None) == "BlobNotFound":
                return
            raise map_azure_error(exc, f"delete {uri}") from exc
        except Exception as exc:
            raise map_azure_error(exc, f"delete {uri}") from exc

    def check(self) -> None:
        """Reach the store: read the probe container's properties when one is set, else list containers."""
        where = f"Azure Blob at {self.account_url or 'the connection string endpoint'}"
        try:
            if self.probe_container:
                self.client.get_container_client(self.probe_container).get_container_properties()
            else:
                next(iter(self.client.list_containers(results_per_page=1).by_page()), None)
        except StorageError:
            raise
        except Exception as exc:
            error = map_azure_error(exc, where)
            if isinstance(error, StorageNotFound):
                raise StorageUnavailable(f"container {self.probe_container!r} does not exist") from exc
            if isinstance(error, StorageDenied) and not self.probe_container:
                # Listing containers is often not granted (a SAS for one container): an answer that says
                # so proves the store is up.
                return
            raise error from exc

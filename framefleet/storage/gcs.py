"""Google Cloud Storage (gs://bucket/object) through the official client library.

Small files go up in one request, large ones as a resumable upload in chunks; GCS creates the object only
when the upload is finalised, so a reader never sees part of it. A create-only publish sets
`ifGenerationMatch=0` ("only if no live object has this name"), which GCS checks atomically (412).
"""

from __future__ import annotations

import errno
import mimetypes
import os
import re
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import requests
from google.api_core import exceptions as api
from google.auth import exceptions as auth_errors
from google.auth.credentials import AnonymousCredentials
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY
from google.oauth2 import service_account

from framefleet.core.failures import FailureClass
from framefleet.storage.base import (
    Digest,
    HashingWriter,
    StorageDenied,
    StorageError,
    StorageNotFound,
    StorageUnavailable,
    check_object_key,
    safe_filename,
    temp_path_in,
)

# Lowercase letters, digits, '-', '_' and '.', 3-63 characters (222 with dots), alphanumeric at both ends.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_CHUNK_UNIT = 256 * 1024  # resumable upload chunks must be multiples of this


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """(bucket, object name) of a gs://bucket/object URI; the name is taken verbatim."""
    scheme, sep, rest = uri.partition("://")
    if not sep or scheme.lower() != "gs":
        raise StorageDenied(f"not a gs:// URI: {uri!r}")
    bucket, _, name = rest.partition("/")
    if (
        not _BUCKET.match(bucket)
        or ".." in bucket
        or any(len(part) > 63 for part in bucket.split("."))
        or bucket.startswith("goog")
    ):
        raise StorageError(
            f"invalid bucket name {bucket!r} in {uri!r}", failure_class=FailureClass.input_invalid
        )
    return bucket, check_object_key(name, uri)


def map_gcs_error(exc: BaseException, what: str) -> StorageError:
    """The storage error for a GCS client failure while doing `what` (e.g. "fetch gs://b/o")."""
    if isinstance(exc, StorageError):
        return exc
    if isinstance(exc, api.RetryError):
        # The client retried transient failures until its deadline: the store is down or overloaded.
        return StorageUnavailable(f"{what}: {exc.cause or exc}")
    if isinstance(exc, api.NotFound):
        return StorageNotFound(f"{what}: not found ({exc.message})")
    if isinstance(exc, (api.Forbidden, api.Unauthorized)):
        return StorageDenied(f"{what}: access denied ({exc.message})")
    if isinstance(exc, (auth_errors.DefaultCredentialsError, auth_errors.RefreshError)):
        return StorageDenied(f"{what}: no usable GCS credentials ({exc})")
    if isinstance(exc, api.GoogleAPICallError):
        status = int(exc.code or 0)
        if status >= 500 or status in (408, 429):
            return StorageUnavailable(f"{what}: store unavailable ({exc.message})")
        return StorageError(
            f"{what}: refused by the store ({exc.message})", failure_class=FailureClass.input_invalid
        )
    if isinstance(exc, (requests.ConnectionError, requests.Timeout, auth_errors.TransportError)):
        # Connection refused, DNS failure, timeouts, resets: all worth retrying later.
        return StorageUnavailable(f"{what}: {exc}")
    if isinstance(exc, OSError):
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageError(f"{what}: {exc.strerror}", failure_class=FailureClass.resource_exhausted)
        return StorageError(f"{what}: {exc}")
    return StorageError(f"{what}: {exc}")


class GcsStorage:
    """gs://bucket/object storage; credentials from a service-account file, the environment's default
    credentials, or none at all against an emulator endpoint."""

    scheme = "gs"

    def __init__(
        self,
        *,
        project: str | None = None,
        endpoint_url: str | None = None,
        credentials_file: Path | None = None,
        credentials_info: dict[str, Any] | None = None,
        probe_bucket: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        retry_seconds: float = 60.0,
        resumable_threshold: int = 16 * 1024**2,
        chunk_size: int = 16 * 1024**2,
    ) -> None:
        if chunk_size % _CHUNK_UNIT:
            raise ValueError(f"GCS upload chunks must be a multiple of {_CHUNK_UNIT} bytes")
        self.project = project
        self.endpoint_url = endpoint_url or None
        self.credentials_file = credentials_file
        # A service-account key given as data (a tenant's storage profile) rather than as a file.
        self.credentials_info = credentials_info
        self.probe_bucket = probe_bucket
        self.timeout = (connect_timeout, read_timeout)
        # Every call here may be repeated safely (a create-only upload is conditional, a replacing one
        # rewrites the same bytes), so all of them retry transient failures, for at most this long.
        self.retry = DEFAULT_RETRY.with_timeout(retry_seconds)
        self.resumable_threshold = resumable_threshold
        self.chunk_size = chunk_size
        self._client: storage.Client | None = None
        # The service-account credentials the client uses, when it has some: they sign URLs locally.
        self._signer: service_account.Credentials | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> storage.Client:
        with self._lock:
            if self._client is None:
                self._client = self._make_client()
            return self._client

    def _make_client(self) -> storage.Client:
        credentials: Any = None
        if self.credentials_info is not None:
            try:
                credentials = service_account.Credentials.from_service_account_info(self.credentials_info)
            except (ValueError, KeyError) as exc:
                raise StorageDenied(f"unusable GCS service-account key: {exc}") from None
        elif self.credentials_file is not None:
            try:
                credentials = service_account.Credentials.from_service_account_file(
                    str(self.credentials_file)
                )
            except (OSError, ValueError) as exc:
                raise StorageDenied(f"unusable GCS credentials file {self.credentials_file}: {exc}") from None
        elif self.endpoint_url:
            # An emulator takes no credentials; the environment's default ones would only be sent along.
            credentials = AnonymousCredentials()
        if isinstance(credentials, service_account.Credentials):
            self._signer = credentials
        options = {"api_endpoint": self.endpoint_url} if self.endpoint_url else None
        try:
            return storage.Client(project=self.project, credentials=credentials, client_options=options)
        except Exception as exc:
            raise map_gcs_error(exc, "GCS client") from exc

    def fetch(
        self, uri: str, workdir: Path, *, name: str | None = None, digest: Digest | None = None
    ) -> Path:
        """Stream the object into `workdir` (temp name, then rename) and return the file's path; `digest`
        is fed the bytes as they are written (the download is one ordered stream)."""
        bucket, key = parse_gs_uri(uri)
        filename = safe_filename(name or key.rsplit("/", 1)[-1], "object")
        tmp: Path | None = None
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            tmp = temp_path_in(workdir, filename)
            blob = self.client.bucket(bucket).blob(key, chunk_size=self.chunk_size)
            with open(tmp, "wb") as handle:
                target = handle if digest is None else HashingWriter(handle, digest)
                blob.download_to_file(target, timeout=self.timeout, retry=self.retry)
            dest = workdir / filename
            os.replace(tmp, dest)
            return dest
        except BaseException as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            if not isinstance(exc, Exception):
                raise
            raise map_gcs_error(exc, f"fetch {uri}") from exc

    def _signed_url(self, uri: str, method: str, expires_seconds: int, **extra: Any) -> str:
        """A V4 signed URL; it needs service-account credentials (they sign locally, with their key)."""
        bucket, key = parse_gs_uri(uri)
        client = self.client  # making the client also records its signing credentials
        credentials = self._signer
        if credentials is None:
            raise StorageDenied("pre-signed GCS URLs need service-account credentials")
        try:
            url: str = (
                client.bucket(bucket)
                .blob(key)
                .generate_signed_url(
                    version="v4",
                    expiration=timedelta(seconds=expires_seconds),
                    method=method,
                    credentials=credentials,
                    api_access_endpoint=self.endpoint_url or "https://storage.googleapis.com",
                    **extra,
                )
            )
        except Exception as exc:
            raise map_gcs_error(exc, f"presign {uri}") from exc
        return url

    def presign_get(self, uri: str, *, expires_seconds: int) -> str:
        """A URL that reads the object (ranges included) without credentials until it expires."""
        return self._signed_url(uri, "GET", expires_seconds)

    def presign_put(self, uri: str, *, expires_seconds: int, size: int) -> tuple[str, dict[str, str]]:
        """A URL and the headers for one PUT of the object at `uri` until it expires."""
        return self._signed_url(uri, "PUT", expires_seconds), {"Content-Length": str(size)}

    def put(self, local: Path, uri: str, *, move: bool = False, replace: bool = True) -> int:
        """Upload `local` to `uri` (resumable, in chunks, above the threshold); with `replace=False` an
        existing object makes it fail with StorageDenied and stays as it was."""
        bucket, key = parse_gs_uri(uri)
        try:
            size = local.stat().st_size
        except OSError as exc:
            raise StorageError(f"local file {local} is not readable: {exc}") from None
        content_type, _ = mimetypes.guess_type(key)
        chunk = self.chunk_size if size > self.resumable_threshold else None
        try:
            blob = self.client.bucket(bucket).blob(key, chunk_size=chunk)
            blob.upload_from_filename(
                str(local),
                content_type=content_type,
                if_generation_match=None if replace else 0,
                timeout=self.timeout,
                retry=self.retry,
            )
        except api.PreconditionFailed as exc:
            raise StorageDenied(f"{uri} already exists and this job may not replace it") from exc
        except Exception as exc:
            raise map_gcs_error(exc, f"put {uri}") from exc
        if move:
            local.unlink(missing_ok=True)
        return size

    def exists(self, uri: str) -> bool:
        """Whether the object exists; a missing bucket also answers False."""
        bucket, key = parse_gs_uri(uri)
        try:
            return bool(self.client.bucket(bucket).blob(key).exists(timeout=self.timeout, retry=self.retry))
        except Exception as exc:
            error = map_gcs_error(exc, f"exists {uri}")
            if isinstance(error, StorageNotFound):
                return False
            raise error from exc

    def delete(self, uri: str) -> None:
        """Delete the object; a missing object is fine, a missing bucket raises StorageNotFound."""
        bucket, key = parse_gs_uri(uri)
        try:
            self.client.bucket(bucket).blob(key).delete(timeout=self.timeout, retry=self.retry)
        except api.NotFound as exc:
            # GCS answers 404 for both; only a bucket that is really there makes it "no such object".
            if self._bucket_exists(bucket):
                return
            raise map_gcs_error(exc, f"delete {uri}") from exc
        except Exception as exc:
            raise map_gcs_error(exc, f"delete {uri}") from exc

    def _bucket_exists(self, bucket: str) -> bool:
        try:
            return bool(self.client.bucket(bucket).exists(timeout=self.timeout, retry=self.retry))
        except Exception as exc:
            raise map_gcs_error(exc, f"bucket {bucket}") from exc

    def check(self) -> None:
        """Reach the store: read the probe bucket's metadata, or ask after a bucket nobody owns."""
        where = f"GCS at {self.endpoint_url or 'Google Cloud'}"
        try:
            if self.probe_bucket:
                self.client.bucket(self.probe_bucket).reload(timeout=self.timeout, retry=self.retry)
            else:
                # Any answer, found or not, proves the store is up; only a failure to ask does not.
                probe = self.client.bucket("framefleet-readiness-probe")
                probe.exists(timeout=self.timeout, retry=self.retry)
        except Exception as exc:
            error = map_gcs_error(exc, where)
            if isinstance(error, StorageNotFound):
                raise StorageUnavailable(f"bucket {self.probe_bucket!r} does not exist") from exc
            if isinstance(error, StorageDenied) and not self.probe_bucket:
                return
            raise error from exc

"""S3 storage (AWS S3, MinIO, any S3-compatible store) through boto3.

Uploads go through boto3's transfer manager: a single PUT for small files, a multipart upload for large
ones. Either way S3 only shows the object once it is complete, which is what makes `put` atomic here.
"""

from __future__ import annotations

import errno
import mimetypes
import os
import re
import threading
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import RetriesExceededError, S3UploadFailedError
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    ParamValidationError,
    PartialCredentialsError,
)

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

# Bucket naming rules shared by AWS and MinIO: 3-63 lowercase letters, digits, dots and hyphens.
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")

_NOT_FOUND_CODES = {"404", "NoSuchKey", "NoSuchBucket", "NotFound", "NoSuchUpload"}
_DENIED_CODES = {
    "401",
    "403",
    "AccessDenied",
    "AllAccessDisabled",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AccountProblem",
    "ExpiredToken",
    "InvalidToken",
    "InvalidObjectState",
}
_UNAVAILABLE_CODES = {
    "500",
    "502",
    "503",
    "504",
    "InternalError",
    "ServiceUnavailable",
    "SlowDown",
    "RequestTimeout",
    "RequestTimeTooSkewed",
    "Throttling",
    "ThrottlingException",
}


def parse_s3_uri(uri: str) -> tuple[str, str]:
    """(bucket, key) of an s3://bucket/key URI; the key is taken verbatim, as the aws CLI does."""
    if not uri[:5].lower() == "s3://":
        raise StorageDenied(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[5:].partition("/")
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise StorageError(
            f"invalid bucket name {bucket!r} in {uri!r}", failure_class=FailureClass.input_invalid
        )
    return bucket, check_object_key(key, uri)


def _root_cause(exc: BaseException) -> BaseException:
    """The botocore error behind boto3's transfer wrappers (they re-raise without keeping the type)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, (ClientError, BotoCoreError)):
            return current
        if isinstance(current, RetriesExceededError) and isinstance(current.last_exception, BaseException):
            current = current.last_exception
            continue
        current = current.__cause__ or current.__context__
    return exc


def map_s3_error(exc: BaseException, what: str) -> StorageError:
    """The storage error for a boto3/botocore failure while doing `what` (e.g. "fetch s3://b/k")."""
    cause = _root_cause(exc)
    if isinstance(cause, ClientError):
        error = cause.response.get("Error", {})
        code = str(error.get("Code", ""))
        status = int(cause.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        detail = error.get("Message") or code or f"HTTP {status}"
        if code in _NOT_FOUND_CODES or status == 404:
            return StorageNotFound(f"{what}: not found ({detail})")
        if code in _DENIED_CODES or status in (401, 403):
            return StorageDenied(f"{what}: access denied ({detail})")
        if code in _UNAVAILABLE_CODES or status >= 500 or status in (408, 429):
            return StorageUnavailable(f"{what}: store unavailable ({detail})")
        return StorageError(
            f"{what}: refused by the store ({detail})", failure_class=FailureClass.input_invalid
        )
    if isinstance(cause, (NoCredentialsError, PartialCredentialsError, CredentialRetrievalError)):
        return StorageDenied(f"{what}: no usable S3 credentials ({cause})")
    if isinstance(cause, ParamValidationError):
        return StorageError(f"{what}: {cause}", failure_class=FailureClass.input_invalid)
    if isinstance(cause, BotoCoreError):
        # Connection refused, DNS failure, connect/read timeouts, resets: all worth retrying later.
        return StorageUnavailable(f"{what}: {cause}")
    if isinstance(cause, OSError):
        if cause.errno in (errno.ENOSPC, errno.EDQUOT):
            return StorageError(f"{what}: {cause.strerror}", failure_class=FailureClass.resource_exhausted)
        return StorageError(f"{what}: {cause}")
    if isinstance(exc, S3UploadFailedError):
        return StorageUnavailable(f"{what}: {exc}")
    return StorageError(f"{what}: {exc}")


def _create_only(request: Any, **_: Any) -> None:
    request.headers["If-None-Match"] = "*"


def _precondition_failed(exc: BaseException) -> bool:
    """Whether a conditional upload failed because the key exists (412, or 409 for a racing upload)."""
    cause = _root_cause(exc)
    if not isinstance(cause, ClientError):
        return False
    code = str(cause.response.get("Error", {}).get("Code", ""))
    return code in ("PreconditionFailed", "412", "ConditionalRequestConflict")


class S3Storage:
    """s3://bucket/key storage; credentials come from the usual AWS environment variables and files."""

    scheme = "s3"

    def __init__(
        self,
        endpoint_url: str | None = None,
        region: str = "us-east-1",
        *,
        probe_bucket: str | None = None,
        connect_timeout: float = 5.0,
        read_timeout: float = 60.0,
        max_attempts: int = 4,
        multipart_threshold: int = 64 * 1024**2,
        multipart_chunksize: int = 64 * 1024**2,
        max_concurrency: int = 4,
        access_key_id: str | None = None,
        secret_access_key: str | None = None,
        session_token: str | None = None,
    ) -> None:
        self.endpoint_url = endpoint_url or None
        # Explicit keys (a tenant's storage profile); None: the usual AWS environment variables and files.
        self._keys = {
            "aws_access_key_id": access_key_id,
            "aws_secret_access_key": secret_access_key,
            "aws_session_token": session_token,
        }
        self.region = region
        self.probe_bucket = probe_bucket
        self._config = Config(
            region_name=region,
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"max_attempts": max_attempts, "mode": "standard"},
            tcp_keepalive=True,
            # MinIO and other self-hosted stores are addressed by path, not by bucket subdomain.
            s3={"addressing_style": "path"} if self.endpoint_url else {},
        )
        self._transfer = TransferConfig(
            multipart_threshold=multipart_threshold,
            multipart_chunksize=multipart_chunksize,
            max_concurrency=max_concurrency,
        )
        self._client: Any = None
        self._exclusive: Any = None
        self._lock = threading.Lock()

    @property
    def client(self) -> Any:
        """The boto3 S3 client, created on first use (clients are thread-safe, their creation is not)."""
        with self._lock:
            if self._client is None:
                session = boto3.session.Session(region_name=self.region, **self._keys)
                self._client = session.client("s3", endpoint_url=self.endpoint_url, config=self._config)
            return self._client

    @property
    def exclusive_client(self) -> Any:
        """A client whose uploads only create: `If-None-Match: *` on every PutObject and on the
        CompleteMultipartUpload that makes a multipart object visible, so S3 refuses (412) to replace an
        existing key, atomically. The transfer manager does not pass that header itself."""
        with self._lock:
            if self._exclusive is None:
                session = boto3.session.Session(region_name=self.region, **self._keys)
                client = session.client("s3", endpoint_url=self.endpoint_url, config=self._config)
                for operation in ("PutObject", "CompleteMultipartUpload"):
                    client.meta.events.register(f"before-sign.s3.{operation}", _create_only)
                self._exclusive = client
            return self._exclusive

    def fetch(
        self, uri: str, workdir: Path, *, name: str | None = None, digest: Digest | None = None
    ) -> Path:
        """Download the object into `workdir` (temp name, then rename) and return the file's path.

        With `digest` the parts are written through a non-seekable HashingWriter: still downloaded in
        parallel, handed over in order, hashed as they land."""
        bucket, key = parse_s3_uri(uri)
        filename = safe_filename(name or key.rsplit("/", 1)[-1], "object")
        tmp: Path | None = None
        try:
            workdir.mkdir(parents=True, exist_ok=True)
            tmp = temp_path_in(workdir, filename)
            if digest is None:
                self.client.download_file(bucket, key, str(tmp), Config=self._transfer)
            else:
                with open(tmp, "wb") as handle:
                    self.client.download_fileobj(
                        bucket, key, HashingWriter(handle, digest), Config=self._transfer
                    )
            dest = workdir / filename
            os.replace(tmp, dest)
            return dest
        except StorageError:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise
        except Exception as exc:
            if tmp is not None:
                tmp.unlink(missing_ok=True)
            raise map_s3_error(exc, f"fetch {uri}") from exc

    def put(self, local: Path, uri: str, *, move: bool = False, replace: bool = True) -> int:
        """Upload `local` to `uri` (multipart above the threshold); the object appears only when complete.

        With `move=True` the local file is deleted once the upload has succeeded. With `replace=False`
        the upload is conditional: an existing object at `uri` makes it fail with StorageDenied.
        """
        bucket, key = parse_s3_uri(uri)
        try:
            size = local.stat().st_size
        except OSError as exc:
            raise StorageError(f"local file {local} is not readable: {exc}") from None
        extra: dict[str, str] = {}
        content_type, _ = mimetypes.guess_type(key)
        if content_type:
            extra["ContentType"] = content_type
        try:
            client = self.client if replace else self.exclusive_client
            client.upload_file(str(local), bucket, key, ExtraArgs=extra or None, Config=self._transfer)
        except Exception as exc:
            if not replace and _precondition_failed(exc):
                raise StorageDenied(f"{uri} already exists and this job may not replace it") from exc
            raise map_s3_error(exc, f"put {uri}") from exc
        if move:
            local.unlink(missing_ok=True)
        return size

    def presign_get(self, uri: str, *, expires_seconds: int) -> str:
        """A URL that reads the object without credentials until it expires (range requests included)."""
        bucket, key = parse_s3_uri(uri)
        try:
            url: str = self.client.generate_presigned_url(
                "get_object", Params={"Bucket": bucket, "Key": key}, ExpiresIn=expires_seconds
            )
        except Exception as exc:
            raise map_s3_error(exc, f"presign {uri}") from exc
        return url

    def presign_put(self, uri: str, *, expires_seconds: int, size: int) -> tuple[str, dict[str, str]]:
        """A URL and the headers for one PUT of exactly `size` bytes at `uri` until it expires."""
        bucket, key = parse_s3_uri(uri)
        try:
            url: str = self.client.generate_presigned_url(
                "put_object",
                Params={"Bucket": bucket, "Key": key, "ContentLength": size},
                ExpiresIn=expires_seconds,
            )
        except Exception as exc:
            raise map_s3_error(exc, f"presign {uri}") from exc
        return url, {"Content-Length": str(size)}

    def exists(self, uri: str) -> bool:
        """Whether the object exists (HEAD); a missing bucket also answers False."""
        bucket, key = parse_s3_uri(uri)
        try:
            self.client.head_object(Bucket=bucket, Key=key)
        except Exception as exc:
            error = map_s3_error(exc, f"exists {uri}")
            if isinstance(error, StorageNotFound):
                return False
            raise error from exc
        return True

    def delete(self, uri: str) -> None:
        """Delete the object; S3 treats a missing key as success, a missing bucket raises StorageNotFound."""
        bucket, key = parse_s3_uri(uri)
        try:
            self.client.delete_object(Bucket=bucket, Key=key)
        except Exception as exc:
            raise map_s3_error(exc, f"delete {uri}") from exc

    def check(self) -> None:
        """Reach the store: HEAD the probe bucket when one is set, else list buckets."""
        try:
            if self.probe_bucket:
                self.client.head_bucket(Bucket=self.probe_bucket)
            else:
                self.client.list_buckets()
        except Exception as exc:
            error = map_s3_error(exc, f"S3 at {self.endpoint_url or 'AWS'}")
            if isinstance(error, StorageNotFound):
                raise StorageUnavailable(f"bucket {self.probe_bucket!r} does not exist") from exc
            cause = _root_cause(exc)
            code = cause.response.get("Error", {}).get("Code") if isinstance(cause, ClientError) else None
            if code == "AccessDenied" and not self.probe_bucket:
                # Listing all buckets is often not granted; an answer that says so proves the store is up.
                return
            raise error from exc

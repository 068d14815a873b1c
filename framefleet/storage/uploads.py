"""Resumable uploads (the tus protocol's state) and pre-signed direct uploads.

An upload is staged in a part file, `<upload dir>/<tenant>/<id>.part`, appended to as bytes arrive and never
held in memory; its size on disk is the upload's offset, so an interrupted request keeps every byte that
reached the disk and the client resumes from there. With its last byte the part file is published to the
tenant's own storage under the output root, `<output root>/tenants/<tenant>/uploads/<id>/<filename>`, through
the same atomic `put` as job outputs: a rename when the upload directory shares the output root's
filesystem, a (multipart) upload to S3/Azure/GCS otherwise ("stage locally, then publish"). A job then
names it `upload://<id>`, resolved at submission within the submitting tenant only.

Appends to one upload are serialised by an exclusive lock on its part file, so two PATCHes racing on the
same offset cannot interleave their bytes: the second is refused as a conflict.

The same bytes are stored once per tenant. At its last byte an upload's SHA-256 is known: hashed as the
bytes arrived when one request brought them all, otherwise by one sequential read of the finished part file
(a hash's running state cannot be kept between requests cheaply). When the tenant already has a live upload
object with that hash and size, the new upload references it and its part file is removed unpublished;
otherwise it is published and becomes a new object of the stored-bytes ledger (lifecycle/ledger.py), its
bytes counted against the tenant's `output_bytes` quota. Deleting an upload drops its reference; the object
and its bytes go with the last one. Tenants never share an object.
"""

from __future__ import annotations

import base64
import binascii
import fcntl
import hashlib
import os
import re
import secrets
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio
import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.config import Settings
from framefleet.db.models import StoredObject, Tenant, Upload
from framefleet.lifecycle import ledger
from framefleet.logging import get_logger
from framefleet.storage import backend_within, join_uri
from framefleet.storage.base import StorageError, safe_filename
from framefleet.storage.namespace import TENANTS_DIR, namespace_for, prefix_location
from framefleet.tenancy.quotas import Over, settings_quotas

if TYPE_CHECKING:
    from hashlib import _Hash as Hash

log = get_logger(__name__)

SCHEME = "upload://"
_ID = re.compile(r"^[0-9a-f]{32}$")
# Bytes gathered before one write to the part file: bounds memory per request and thread hops per GiB.
WRITE_CHUNK = 1024 * 1024
EXPIRE_BATCH = 200


class UploadNotFound(LookupError):
    """No such upload for this tenant (or it expired)."""


class UploadBusy(RuntimeError):
    """Another request is appending to this upload right now."""


class OverQuota(RuntimeError):
    """The upload would take the tenant's stored bytes past its `output_bytes` quota."""

    def __init__(self, over: Over) -> None:
        super().__init__(f"{over.quota}: {over.usage} of {over.limit}")
        self.over = over


class UploadTooLarge(ValueError):
    """More bytes than the upload's declared length, or a length over the tenant's limit."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message)
        self.limit = limit


@dataclass(frozen=True)
class Metadata:
    filename: str


def parse_metadata(header: str | None) -> Metadata:
    """tus `Upload-Metadata` (`key base64value,…`); ValueError when malformed. Only `filename` is used."""
    values: dict[str, str] = {}
    for pair in (header or "").split(","):
        if not pair.strip():
            continue
        key, _, encoded = pair.strip().partition(" ")
        try:
            values[key] = base64.b64decode(encoded, validate=True).decode("utf-8") if encoded else ""
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError(f"Upload-Metadata value of {key!r} is not base64 of UTF-8 text") from None
    return Metadata(filename=safe_filename(values.get("filename") or values.get("name") or "", "upload"))


def max_bytes_of(settings: Settings, tenant_settings: Mapping[str, Any] | None) -> int:
    """The largest upload a tenant may make: its `uploads.max_bytes`, else the deployment's."""
    raw = ((tenant_settings or {}).get("uploads") or {}).get("max_bytes")
    if isinstance(raw, int) and not isinstance(raw, bool) and raw > 0:
        return raw
    return settings.upload_max_bytes


def part_path(settings: Settings, tenant: str, upload_id: str) -> Path:
    assert settings.upload_dir is not None and _ID.match(upload_id)
    return settings.upload_dir / tenant / f"{upload_id}.part"


def offset_of(settings: Settings, tenant: str, upload: Upload) -> int:
    """Bytes received so far: the part file's size (its length once complete)."""
    if upload.state == "complete":
        return upload.length
    try:
        return part_path(settings, tenant, upload.id).stat().st_size
    except FileNotFoundError:
        return 0


def destination(settings: Settings, tenant: str, upload_id: str, filename: str) -> str:
    """Where a finished upload is published: its own folder in the tenant's area of the output root."""
    base = prefix_location(settings.output_root).child(TENANTS_DIR, tenant, "uploads", upload_id).uri
    return join_uri(base, filename)


def create(
    session: Session, *, settings: Settings, tenant: Tenant, length: int, metadata: Metadata, now: datetime
) -> Upload:
    """A new, empty upload of `length` bytes; UploadTooLarge beyond the tenant's limit, OverQuota when its
    stored bytes plus `length` would pass its `output_bytes` quota (a duplicate is only known at the end)."""
    limit = max_bytes_of(settings, tenant.settings)
    if length > limit:
        raise UploadTooLarge(f"Upload-Length {length} is over this tenant's limit of {limit} bytes", limit)
    quota = settings_quotas(tenant.settings).output_bytes
    if quota is not None:
        stored = ledger.stored_bytes(session, tenant_id=tenant.id)
        if stored + length > quota:
            raise OverQuota(Over("output_bytes", stored, quota))
    upload = Upload(
        id=secrets.token_hex(16),
        tenant_id=tenant.id,
        length=length,
        filename=metadata.filename,
        created_at=now,
        updated_at=now,
        expires_at=now + timedelta(seconds=settings.upload_expiry_seconds),
    )
    part = part_path(settings, tenant.name, upload.id)
    part.parent.mkdir(parents=True, exist_ok=True)
    part.touch(mode=0o600, exist_ok=False)
    session.add(upload)
    session.commit()
    return upload


def find(session: Session, *, tenant_id: int, upload_id: str, now: datetime) -> Upload:
    """The tenant's upload; another tenant's, an unknown or an expired unfinished one is UploadNotFound."""
    upload = session.get(Upload, upload_id) if _ID.match(upload_id) else None
    if upload is None or upload.tenant_id != tenant_id:
        raise UploadNotFound(upload_id)
    if upload.state == "open" and upload.expires_at <= now:
        raise UploadNotFound(upload_id)
    return upload


@contextmanager
def appending(part: Path) -> Iterator[IO[bytes]]:
    """The part file opened for appending under an exclusive lock; UploadBusy when another holds it."""
    try:
        handle = open(part, "ab")  # noqa: SIM115 (closed below, after the lock)
    except FileNotFoundError:
        raise UploadNotFound(part.stem) from None
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise UploadBusy("another request is appending to this upload") from None
        yield handle
    finally:
        handle.close()


async def receive(
    handle: IO[bytes], chunks: AsyncIterator[bytes], *, room: int, digest: Hash | None = None
) -> int:
    """Append what `chunks` bring to `handle` (at most `room` bytes); the number of bytes written. `digest`,
    when given, is updated with every byte written.

    Bytes are gathered up to WRITE_CHUNK and written (and hashed) from a thread, so memory stays bounded
    and the event loop never waits on the disk. Whatever arrived before the client hung up is written
    before returning or raising, so a resumed upload loses nothing that reached the server. UploadTooLarge
    past `room`.
    """
    written = 0
    pending: list[bytes] = []
    size = 0

    def write(data: bytes) -> None:
        handle.write(data)
        if digest is not None:
            digest.update(data)

    async def flush() -> None:
        nonlocal written, size
        if pending:
            data = b"".join(pending)
            pending.clear()
            size = 0
            await anyio.to_thread.run_sync(write, data)
            written += len(data)

    try:
        async for chunk in chunks:
            if written + size + len(chunk) > room:
                raise UploadTooLarge(f"more bytes than the {room} left of this upload", room)
            pending.append(chunk)
            size += len(chunk)
            if size >= WRITE_CHUNK:
                await flush()
    finally:
        with anyio.CancelScope(shield=True):
            await flush()
            await anyio.to_thread.run_sync(handle.flush)
    return written


def touch(session: Session, *, upload: Upload, settings: Settings, now: datetime) -> None:
    """Record activity: an upload that receives bytes lives on."""
    upload.updated_at = now
    upload.expires_at = now + timedelta(seconds=settings.upload_expiry_seconds)
    session.commit()


def finish(
    session: Session,
    *,
    settings: Settings,
    tenant: str,
    upload: Upload,
    now: datetime,
    sha256: str | None = None,
) -> str:
    """Complete an upload whose part file holds all its bytes; the stored URI. `sha256` is the content's
    hash when the caller computed it as the bytes arrived; otherwise the part file is read once for it.

    The tenant's live object with the same hash and size is referenced (the part file is removed); else
    the part file is published to the tenant's storage and recorded in the ledger.
    """
    part = part_path(settings, tenant, upload.id)
    with open(part, "rb+") as handle:
        os.fsync(handle.fileno())
        if sha256 is None:
            sha256 = hashlib.file_digest(handle, "sha256").hexdigest()
    same = ledger.claim_upload_content(
        session, tenant_id=upload.tenant_id, sha256=sha256, size_bytes=upload.length
    )
    if same is not None:
        part.unlink(missing_ok=True)
        upload.object_id, upload.uri = same.id, same.uri
    else:
        # Published outside any lock: a copy to an object store may take long. Two identical uploads that
        # finish at the same moment may both publish; each is then its own object, correctly counted.
        session.rollback()
        uri = destination(settings, tenant, upload.id, upload.filename)
        backend_within(uri, namespace_for(settings, tenant), write=True, settings=settings).put(
            part, uri, move=True
        )
        part.unlink(missing_ok=True)
        stored = ledger.record_upload(
            session, tenant_id=upload.tenant_id, uri=uri, size_bytes=upload.length, sha256=sha256, at=now
        )
        upload.object_id, upload.uri = stored.id, uri
    upload.state = "complete"
    upload.updated_at = now
    session.commit()
    log.info(
        "upload complete",
        upload=upload.id,
        tenant=tenant,
        bytes=upload.length,
        uri=upload.uri,
        dedup=same is not None,
    )
    return upload.uri


def terminate(session: Session, *, settings: Settings, tenant: str, upload: Upload, now: datetime) -> None:
    """Delete an upload: its part file, or its reference to its stored object (the object itself, and its
    bytes on the ledger, with the last reference), then its row."""
    object_id = upload.object_id
    if object_id is None:
        part_path(settings, tenant, upload.id).unlink(missing_ok=True)
        session.delete(upload)
        session.commit()
        return
    # Locked first: a finishing upload that would reference the object waits, or finds it gone.
    stored = ledger.lock_object(session, object_id=object_id)
    session.delete(upload)
    session.flush()
    if stored is not None and not _referenced(session, object_id):
        _delete_object(session, settings=settings, tenant=tenant, stored=stored, now=now)
    session.commit()


def _referenced(session: Session, object_id: int) -> bool:
    return session.scalar(sa.select(sa.exists().where(Upload.object_id == object_id))) is True


def _delete_object(
    session: Session, *, settings: Settings, tenant: str, stored: StoredObject, now: datetime
) -> None:
    """Delete an upload object from the store, then from the ledger (caller's tx): a StorageError leaves
    both, and the caller's rollback keeps the references that were being dropped."""
    backend_within(stored.uri, namespace_for(settings, tenant), write=True, settings=settings).delete(
        stored.uri
    )
    ledger.mark_deleted(session, tenant_id=stored.tenant_id, objects=[stored], at=now)


def delete_content(
    session: Session, *, settings: Settings, tenant: str, tenant_id: int, uri: str, now: datetime
) -> list[str] | None:
    """Retention deleting an input that is uploaded content: the object, off the ledger, and every upload
    of the tenant that references it (the same bytes are one object, so they all lose it); the ids of the
    uploads removed, or None when `uri` is no live upload object of the tenant (committed)."""
    stored = session.scalar(
        sa.select(StoredObject).where(
            StoredObject.tenant_id == tenant_id,
            StoredObject.role == "upload",
            StoredObject.uri == uri,
            StoredObject.deleted_at.is_(None),
        )
    )
    if stored is None:
        return None
    stored = ledger.lock_object(session, object_id=stored.id)
    assert stored is not None
    removed = list(session.scalars(sa.select(Upload.id).where(Upload.object_id == stored.id)))
    session.execute(sa.delete(Upload).where(Upload.object_id == stored.id))
    _delete_object(session, settings=settings, tenant=tenant, stored=stored, now=now)
    session.commit()
    return removed


def stored_uri(session: Session, *, tenant_id: int, uri: str) -> str:
    """The storage URI an `upload://<id>` stands for, for this tenant only; UploadNotFound otherwise."""
    upload_id = uri[len(SCHEME) :].strip("/")
    upload = session.get(Upload, upload_id) if _ID.match(upload_id) else None
    if upload is None or upload.tenant_id != tenant_id or upload.state != "complete" or upload.uri is None:
        raise UploadNotFound(upload_id)
    return upload.uri


def expire(session: Session, *, settings: Settings, now: datetime) -> int:
    """Delete unfinished uploads past their expiry (part file, then row), at most EXPIRE_BATCH at once."""
    rows = session.execute(
        sa.select(Upload, Tenant.name)
        .join(Tenant, Tenant.id == Upload.tenant_id)
        .where(Upload.state == "open", Upload.expires_at <= now)
        .limit(EXPIRE_BATCH)
    ).all()
    for upload, tenant in rows:
        part_path(settings, tenant, upload.id).unlink(missing_ok=True)
        session.delete(upload)
    session.commit()
    if rows:
        log.info("expired abandoned uploads", count=len(rows))
    return len(rows)


def presign(*, settings: Settings, tenant: str, filename: str, size: int) -> tuple[str, dict[str, str], str]:
    """(URL, headers to send, storage URI) for one direct PUT of `size` bytes into the tenant's area of the
    output root.

    StorageError when that store cannot pre-sign (a local output root: use the resumable upload instead).
    """
    uri = destination(settings, tenant, secrets.token_hex(16), safe_filename(filename, "upload"))
    backend = backend_within(uri, namespace_for(settings, tenant), write=True, settings=settings)
    sign = getattr(backend, "presign_put", None)
    if sign is None:
        raise StorageError(f"{backend.scheme}:// storage has no pre-signed uploads; use the resumable upload")
    url, headers = sign(uri, expires_seconds=settings.upload_link_seconds, size=size)
    return url, headers, uri

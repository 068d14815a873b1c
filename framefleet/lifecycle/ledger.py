"""The stored-object ledger and each tenant's stored bytes.

Every object a job publishes gets a row (`stored_objects`: URI and size, from the put itself) and its bytes
are added to the tenant's counter (`tenant_storage`) in the transaction that records the job's success.
Retention deletes objects from the ledger and takes their bytes off in the transaction that marks them
deleted. A finished upload's content is an object too (role `upload`, storage/uploads.py), counted when it
is published and taken off when the last upload of those bytes is deleted. So the quota check at submission
reads one row, never the store or the tenant's jobs; `reconcile` (`framefleet storage reconcile`) asks the
store which objects still exist and recomputes the counters from that, for objects removed behind
FrameFleet's back or counters in doubt.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from framefleet.db.models import StoredObject, TenantStorage, utcnow


@dataclass(frozen=True)
class Object:
    """An object as published: where, and how many bytes."""

    uri: str
    size_bytes: int


def _add(session: Session, *, tenant_id: int, size: int, count: int, at: datetime) -> None:
    """Add (or, negative, take off) bytes and objects to the tenant's counter: one upsert."""
    insert = postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert
    statement = insert(TenantStorage).values(
        tenant_id=tenant_id, stored_bytes=max(size, 0), objects=max(count, 0), updated_at=at
    )
    bytes_now = TenantStorage.stored_bytes + size
    objects_now = TenantStorage.objects + count
    session.execute(
        statement.on_conflict_do_update(
            index_elements=["tenant_id"],
            set_={
                # Never below zero: a counter reconciled while a deletion ran must not go negative.
                "stored_bytes": sa.case((bytes_now < 0, 0), else_=bytes_now),
                "objects": sa.case((objects_now < 0, 0), else_=objects_now),
                "updated_at": at,
            },
        )
    )


def record_published(
    session: Session,
    *,
    tenant_id: int,
    job_id: str,
    objects: Sequence[Object],
    role: str = "output",
    at: datetime | None = None,
) -> None:
    """Ledger rows for a job's published objects and their bytes on the tenant's counter (caller's tx)."""
    at = at or utcnow()
    if not objects:
        return
    session.execute(
        sa.insert(StoredObject),
        [
            {
                "tenant_id": tenant_id,
                "job_id": job_id,
                "role": role,
                "uri": o.uri,
                "size_bytes": o.size_bytes,
                "created_at": at,
            }
            for o in objects
        ],
    )
    _add(session, tenant_id=tenant_id, size=sum(o.size_bytes for o in objects), count=len(objects), at=at)


def record_upload(
    session: Session, *, tenant_id: int, uri: str, size_bytes: int, sha256: str, at: datetime
) -> StoredObject:
    """The ledger row of a finished upload's content and its bytes on the tenant's counter (caller's tx)."""
    row = StoredObject(
        tenant_id=tenant_id,
        job_id=None,
        role="upload",
        uri=uri,
        size_bytes=size_bytes,
        sha256=sha256,
        created_at=at,
    )
    session.add(row)
    session.flush()
    _add(session, tenant_id=tenant_id, size=size_bytes, count=1, at=at)
    return row


def claim_upload_content(
    session: Session, *, tenant_id: int, sha256: str, size_bytes: int
) -> StoredObject | None:
    """The tenant's live upload object holding these bytes, locked until the caller's transaction ends (so
    the deletion of its last reference waits, or went first and it is not found); None when it has none.

    A no-op UPDATE rather than SELECT ... FOR UPDATE: it locks the row on PostgreSQL and, on SQLite (which
    ignores FOR UPDATE), opens the write transaction before anything is read.
    """
    ids = (
        session.execute(
            sa.update(StoredObject)
            .where(
                StoredObject.tenant_id == tenant_id,
                StoredObject.sha256 == sha256,
                StoredObject.size_bytes == size_bytes,
                StoredObject.role == "upload",
                StoredObject.deleted_at.is_(None),
            )
            .values(id=StoredObject.id)
            .returning(StoredObject.id)
        )
        .scalars()
        .all()
    )
    return session.get(StoredObject, min(ids)) if ids else None


def lock_object(session: Session, *, object_id: int) -> StoredObject | None:
    """One ledger row, locked until the caller's transaction ends (as claim_upload_content locks)."""
    session.execute(sa.update(StoredObject).where(StoredObject.id == object_id).values(id=StoredObject.id))
    return session.get(StoredObject, object_id, populate_existing=True)


def live_objects(session: Session, *, job_id: str, role: str = "output") -> list[StoredObject]:
    """The job's objects not yet deleted, in publishing order."""
    return list(
        session.scalars(
            sa.select(StoredObject)
            .where(
                StoredObject.job_id == job_id, StoredObject.role == role, StoredObject.deleted_at.is_(None)
            )
            .order_by(StoredObject.id)
        )
    )


def mark_deleted(session: Session, *, tenant_id: int, objects: Iterable[StoredObject], at: datetime) -> int:
    """Mark objects deleted and take their bytes off the tenant's counter; the bytes freed."""
    ids = [o.id for o in objects if o.deleted_at is None]
    if not ids:
        return 0
    # Only rows still live are counted: two sweeps racing over one object take its bytes off once.
    freed = (
        session.execute(
            sa.update(StoredObject)
            .where(StoredObject.id.in_(ids), StoredObject.deleted_at.is_(None))
            .values(deleted_at=at)
            .returning(StoredObject.size_bytes)
        )
        .scalars()
        .all()
    )
    if freed:
        _add(session, tenant_id=tenant_id, size=-sum(freed), count=-len(freed), at=at)
    return int(sum(freed))


def stored_bytes(session: Session, *, tenant_id: int) -> int:
    """The tenant's stored bytes now (one row)."""
    return int(
        session.scalar(sa.select(TenantStorage.stored_bytes).where(TenantStorage.tenant_id == tenant_id)) or 0
    )


@dataclass
class Reconciled:
    tenant_id: int
    before: int
    after: int
    objects: int
    missing: list[str]


def reconcile(
    session: Session,
    *,
    exists: Callable[[int, str], bool],
    tenant_id: int | None = None,
    dry_run: bool = False,
    at: datetime | None = None,
) -> list[Reconciled]:
    """Recompute stored bytes from the store: `exists(tenant_id, uri)` is asked for every live object; a
    missing one is marked deleted, and each tenant's counter becomes the sum of what exists (flushed, not
    committed; nothing changes with `dry_run`)."""
    at = at or utcnow()
    query = sa.select(StoredObject).where(StoredObject.deleted_at.is_(None)).order_by(StoredObject.id)
    tenants = sa.select(TenantStorage.tenant_id)
    if tenant_id is not None:
        query = query.where(StoredObject.tenant_id == tenant_id)
        tenants = tenants.where(TenantStorage.tenant_id == tenant_id)
    found: dict[int, Reconciled] = {
        t: Reconciled(t, stored_bytes(session, tenant_id=t), 0, 0, []) for t in session.scalars(tenants)
    }
    for row in session.scalars(query):
        result = found.setdefault(
            row.tenant_id, Reconciled(row.tenant_id, stored_bytes(session, tenant_id=row.tenant_id), 0, 0, [])
        )
        if exists(row.tenant_id, row.uri):
            result.after += row.size_bytes
            result.objects += 1
        else:
            result.missing.append(row.uri)
            if not dry_run:
                row.deleted_at = at
    if not dry_run:
        for result in found.values():
            session.merge(
                TenantStorage(
                    tenant_id=result.tenant_id,
                    stored_bytes=result.after,
                    objects=result.objects,
                    updated_at=at,
                )
            )
        session.flush()
    return sorted(found.values(), key=lambda r: r.tenant_id)

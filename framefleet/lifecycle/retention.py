"""Retention: deleting a job's outputs, input and leftover work files once their days have passed.

How long is the job spec's `retention` (per field), else the tenant's `settings.retention`, else for ever.
The due dates are fixed when a job succeeds (`due_dates`, stored on the row and indexed), so the sweep
reads the next due jobs in order and never evaluates a spec. The beat leader sweeps every
FRAMEFLEET_RETENTION_INTERVAL_SECONDS in batches of FRAMEFLEET_RETENTION_BATCH jobs; `framefleet retention
sweep [--dry-run]` runs the same pass by hand. A job under legal hold is never touched. Every deletion
(and every refusal to delete) is an audit row naming the objects. The job row stays, its outputs marked
`expired`, until FRAMEFLEET_RETENTION_JOB_ROWS_DAYS after it ended (never, unset).
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.config import Settings
from framefleet.core.spec import RetentionSpec
from framefleet.core.states import TERMINAL
from framefleet.db.models import Job, StoredObject, Tenant, utcnow
from framefleet.db.session import session_scope
from framefleet.lifecycle import ledger
from framefleet.logging import get_logger
from framefleet.storage import backend_within, uploads
from framefleet.storage.base import StorageError
from framefleet.storage.namespace import namespace_for
from framefleet.tenancy import audit

log = get_logger("framefleet.retention")

# The actor of the sweep's audit rows: the installation itself, not a key.
SWEEP = audit.Actor(actor="retention", role="admin")
FIELDS = ("inputs", "outputs", "work")


@dataclass(frozen=True)
class Retention:
    """Days each kind of file is kept after the job ends; None keeps it."""

    inputs: int | None = None
    outputs: int | None = None
    work: int | None = None


def retention_of(settings: Mapping[str, Any] | None) -> Retention:
    """A tenant's retention from settings (`{"retention": {"outputs": 30}}`); ValueError when malformed."""
    raw = (settings or {}).get("retention")
    if raw is None:
        return Retention()
    if not isinstance(raw, Mapping) or not set(raw) <= set(FIELDS):
        raise ValueError(f"settings.retention may hold {', '.join(FIELDS)}")
    for name, value in raw.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ValueError(f"settings.retention.{name} must be a whole number of days (0 or more), or null")
    return Retention(**raw)


def settings_retention(settings: Mapping[str, Any] | None) -> Retention:
    """retention_of for stored settings: malformed ones (from before the check) keep everything."""
    try:
        return retention_of(settings)
    except ValueError:
        return Retention()


def effective(spec: RetentionSpec | None, tenant: Retention) -> Retention:
    """The job's retention: each field of the spec's, where set, else the tenant's."""
    if spec is None:
        return tenant
    return Retention(
        inputs=spec.inputs if spec.inputs is not None else tenant.inputs,
        outputs=spec.outputs if spec.outputs is not None else tenant.outputs,
        work=spec.work if spec.work is not None else tenant.work,
    )


def due_dates(finished_at: datetime, retention: Retention) -> tuple[datetime | None, datetime | None]:
    """When the outputs and the input of a job that ended at `finished_at` fall due (None: never)."""

    def plus(days: int | None) -> datetime | None:
        return None if days is None else finished_at + timedelta(days=days)

    return plus(retention.outputs), plus(retention.inputs)


def schedule(session: Session, *, job: Job) -> None:
    """Fix when a job that just succeeded falls due, from its spec's and its tenant's retention."""
    if job.finished_at is None:
        return
    raw = job.spec.get("retention")
    spec = RetentionSpec.model_validate(raw) if raw else None
    tenant_settings = session.scalar(sa.select(Tenant.settings).where(Tenant.id == job.tenant_id))
    outputs, inputs = due_dates(job.finished_at, effective(spec, settings_retention(tenant_settings)))
    if outputs is not None or inputs is not None:
        session.execute(
            sa.update(Job).where(Job.id == job.id).values(expires_at=outputs, inputs_expire_at=inputs)
        )


@dataclass
class Deletion:
    """What one job lost (or, in a dry run, would lose)."""

    job_id: str
    tenant: str
    kind: str  # outputs | input | work | row
    uris: list[str] = field(default_factory=list)
    bytes: int = 0
    error: str | None = None

    def view(self) -> dict[str, Any]:
        return {
            "job_id": self.job_id,
            "tenant": self.tenant,
            "kind": self.kind,
            "uris": self.uris,
            "bytes": self.bytes,
            "error": self.error,
        }


def _tenant_names(session: Session, ids: set[int]) -> dict[int, str]:
    if not ids:
        return {}
    return dict(session.execute(sa.select(Tenant.id, Tenant.name).where(Tenant.id.in_(ids))).all())


def _due_outputs(session: Session, now: datetime, limit: int) -> list[Job]:
    return list(
        session.scalars(
            sa.select(Job)
            .where(Job.expires_at <= now, Job.expired_at.is_(None), Job.legal_hold.is_(False))
            .order_by(Job.expires_at, Job.id)
            .limit(limit)
        )
    )


def _due_inputs(session: Session, now: datetime, limit: int) -> list[Job]:
    return list(
        session.scalars(
            sa.select(Job)
            .where(Job.inputs_expire_at <= now, Job.legal_hold.is_(False))
            .order_by(Job.inputs_expire_at, Job.id)
            .limit(limit)
        )
    )


def _audit(session: Session, done: Deletion, *, dry_run: bool) -> None:
    if dry_run:
        return
    action = {"outputs": "retention.delete_outputs", "input": "retention.delete_input"}.get(
        done.kind, f"retention.delete_{done.kind}"
    )
    audit.record(
        session,
        SWEEP,
        action=action,
        target=f"job:{done.job_id}",
        outcome="error" if done.error else "ok",
        details={"tenant": done.tenant, "uris": done.uris, "bytes": done.bytes, "error": done.error},
    )


def _delete_outputs(job: Job, tenant: str, settings: Settings, *, now: datetime, dry_run: bool) -> Deletion:
    with session_scope(settings.database_url) as session:
        objects = ledger.live_objects(session, job_id=job.id)
    done = Deletion(job.id, tenant, "outputs", [o.uri for o in objects], sum(o.size_bytes for o in objects))
    if dry_run:
        return done
    namespace = namespace_for(settings, tenant)
    deleted: list[StoredObject] = []
    # Newest first, as a failed publish unwinds: manifests disappear before the segments they list.
    for obj in reversed(objects):
        try:
            backend_within(obj.uri, namespace, write=True, settings=settings).delete(obj.uri)
        except StorageError as exc:
            done.error = f"{obj.uri}: {exc.message}"
            break
        deleted.append(obj)
    with session_scope(settings.database_url) as session:
        freed = ledger.mark_deleted(session, tenant_id=job.tenant_id, objects=deleted, at=now)
        if done.error is None:
            session.execute(sa.update(Job).where(Job.id == job.id).values(expired_at=now))
        else:
            done.uris = [o.uri for o in deleted]
        done.bytes = freed
        _audit(session, done, dry_run=False)
    return done


def _delete_input(job: Job, tenant: str, settings: Settings, *, now: datetime, dry_run: bool) -> Deletion:
    uri = job.spec.get("input")
    done = Deletion(job.id, tenant, "input", [uri] if isinstance(uri, str) else [])
    if dry_run or not done.uris:
        if not dry_run:
            with session_scope(settings.database_url) as session:
                session.execute(sa.update(Job).where(Job.id == job.id).values(inputs_expire_at=None))
        return done
    try:
        with session_scope(settings.database_url) as session:
            # Uploaded content goes through its ledger row: its bytes come off, and its uploads with it.
            removed = uploads.delete_content(
                session, settings=settings, tenant=tenant, tenant_id=job.tenant_id, uri=done.uris[0], now=now
            )
        if removed is None:
            # Only an input the tenant may write is deleted: a shared library or https:// source is not its.
            backend_within(
                done.uris[0], namespace_for(settings, tenant), write=True, settings=settings
            ).delete(done.uris[0])
        else:
            done.uris += [f"{uploads.SCHEME}{upload_id}" for upload_id in removed]
    except StorageError as exc:
        done.error = exc.message
    with session_scope(settings.database_url) as session:
        # Done either way: a refusal (not the tenant's to delete) would be refused again on every pass.
        session.execute(sa.update(Job).where(Job.id == job.id).values(inputs_expire_at=None))
        _audit(session, done, dry_run=False)
    return done


def _work_folders(
    settings: Settings, session: Session, *, now: datetime, limit: int
) -> list[tuple[Path, Job, str]]:
    """Attempt folders left under this host's work root by killed workers, of ended jobs past their
    `work` days (the worker removes its own folder when an attempt ends, so these are leftovers)."""
    try:
        entries = sorted(p for p in settings.work_root.iterdir() if p.is_dir())
    except OSError:
        return []
    found: list[tuple[Path, Job, str]] = []
    for entry in entries[: limit * 10]:
        job = session.get(Job, entry.name)
        if job is None or job.state not in TERMINAL or job.finished_at is None or job.legal_hold:
            continue
        tenant = session.get(Tenant, job.tenant_id)
        if tenant is None:
            continue
        spec = RetentionSpec.model_validate(job.spec["retention"]) if job.spec.get("retention") else None
        days = effective(spec, settings_retention(tenant.settings)).work
        if days is not None and job.finished_at + timedelta(days=days) <= now:
            found.append((entry, job, tenant.name))
        if len(found) >= limit:
            break
    return found


def _purge_rows(
    session: Session, settings: Settings, *, now: datetime, limit: int, dry_run: bool
) -> list[str]:
    """Ids of ended jobs past the row retention with no live objects and no hold (deleted unless dry)."""
    days = settings.retention_job_rows_days
    if days is None:
        return []
    live = sa.exists().where(StoredObject.job_id == Job.id, StoredObject.deleted_at.is_(None))
    ids = list(
        session.scalars(
            sa.select(Job.id)
            .where(
                Job.state.in_([s.value for s in TERMINAL]),
                Job.finished_at <= now - timedelta(days=days),
                Job.legal_hold.is_(False),
                Job.inputs_expire_at.is_(None),
                ~live,
            )
            .order_by(Job.finished_at, Job.id)
            .limit(limit)
        )
    )
    if ids and not dry_run:
        session.execute(sa.delete(Job).where(Job.id.in_(ids)))
        audit.record(session, SWEEP, action="retention.purge_jobs", target=None, details={"jobs": ids})
    return ids


def sweep(settings: Settings, *, now: datetime | None = None, dry_run: bool = False) -> list[Deletion]:
    """One bounded pass: due outputs, then due inputs, then leftover work folders, then old job rows.

    Each job's objects are deleted before its ledger rows are marked, so a pass cut short leaves at worst
    objects already gone that the next pass deletes again (a missing object is not an error).
    """
    now = now or utcnow()
    limit = settings.retention_batch
    done: list[Deletion] = []
    with session_scope(settings.database_url) as session:
        outputs = _due_outputs(session, now, limit)
        inputs = _due_inputs(session, now, limit)
        names = _tenant_names(session, {j.tenant_id for j in (*outputs, *inputs)})
        session.expunge_all()
    for job in outputs:
        done.append(_delete_outputs(job, names.get(job.tenant_id, ""), settings, now=now, dry_run=dry_run))
    for job in inputs:
        done.append(_delete_input(job, names.get(job.tenant_id, ""), settings, now=now, dry_run=dry_run))
    with session_scope(settings.database_url) as session:
        for folder, job, tenant in _work_folders(settings, session, now=now, limit=limit):
            work = Deletion(job.id, tenant, "work", [folder.as_uri()])
            if not dry_run:
                shutil.rmtree(folder, ignore_errors=True)
                _audit(session, work, dry_run=False)
            done.append(work)
    with session_scope(settings.database_url) as session:
        for job_id in _purge_rows(session, settings, now=now, limit=limit, dry_run=dry_run):
            done.append(Deletion(job_id, "", "row"))
    if done and not dry_run:
        log.info("retention sweep", deleted=len(done), errors=sum(1 for d in done if d.error))
    return done


def set_hold(session: Session, *, job_id: str, tenant_id: int, held: bool) -> Job:
    """Put a legal hold on one of the tenant's jobs, or lift it (committed); LookupError when it has no such
    job.

    The API's audit middleware records who did it (action `jobs.hold` / `jobs.release_hold`)."""
    job = session.scalar(sa.select(Job).where(Job.id == job_id, Job.tenant_id == tenant_id))
    if job is None:
        raise LookupError(job_id)
    job.legal_hold = held
    session.commit()
    return job

"""The staged chunks of split attempts (`<job folder>/.chunks/<attempt>/`): where they go and their removal.

A chunk records the places it is about to stage in its row (`details.staging`) before it writes any of
them, and only while its job is still running that attempt (scheduling/chunks.py `stage`). So whoever
ends an attempt, in any way, finds every object that attempt may have staged in its rows: the join after
publishing, the chunk that records a failure or a cancel, a chunk that staged after the attempt ended, the
reaper that fails an attempt whose worker was lost, and the next attempt for whatever a crash left.
Deleting is idempotent, so more than one of them may do it.
"""

from __future__ import annotations

import contextlib
import shutil

import sqlalchemy as sa

from framefleet.config import Settings
from framefleet.db.models import Job, JobChunk, Tenant
from framefleet.db.session import session_scope
from framefleet.logging import get_logger
from framefleet.storage import backend_within, join_uri
from framefleet.storage.base import StorageError
from framefleet.storage.local import LocalStorage
from framefleet.storage.namespace import job_output_base, namespace_for

log = get_logger("framefleet.staging")

STAGING = ".chunks"


def staging_base(settings: Settings, tenant: str, job_id: str, job_attempt: int) -> str:
    """Where an attempt's chunks wait for the join: a folder of the job's own, removed after publishing."""
    return join_uri(job_output_base(settings, tenant, job_id), f"{STAGING}/{job_attempt}")


def discard(settings: Settings, *, job_id: str, job_attempt: int | None = None) -> None:
    """Remove what the job's split attempts staged (one attempt's, or every attempt that has rows).

    Never raises: a leftover is logged and left, the job's ending stands.
    """
    with session_scope() as session:
        query = sa.select(JobChunk.job_attempt, JobChunk.details).where(JobChunk.job_id == job_id)
        if job_attempt is not None:
            query = query.where(JobChunk.job_attempt == job_attempt)
        rows = session.execute(query).all()
        tenant = session.scalar(
            sa.select(Tenant.name).join(Job, Job.tenant_id == Tenant.id).where(Job.id == job_id)
        )
    if not rows or tenant is None:
        return
    namespace = namespace_for(settings, tenant)
    for row in rows:
        for uri in (row.details or {}).get("staging", []):
            try:
                backend_within(uri, namespace, write=True, settings=settings).delete(uri)
            except StorageError as exc:
                log.warning("a staged chunk was not removed", uri=uri, error=str(exc))
    for attempt in sorted({row.job_attempt for row in rows}):
        base = staging_base(settings, tenant, job_id, attempt)
        try:
            backend = backend_within(base, namespace, write=True, settings=settings)
        except StorageError:
            continue
        if isinstance(backend, LocalStorage):
            # A folder is an object store's illusion but a real directory here: the attempt's goes (with
            # any temporary file a killed upload left), then the staging folder once no attempt uses it.
            folder = backend.path_for(base, for_output=True)
            shutil.rmtree(folder, ignore_errors=True)
            with contextlib.suppress(OSError):  # not empty (another attempt's chunks) or already gone
                folder.parent.rmdir()

"""The result cache: a job whose input content and spec match a tenant's earlier success reuses its outputs.

The key is the SHA-256 of the input's fingerprint (its content hash, computed while the worker fetches it)
and the normalised spec without what does not change the outputs (priority, webhooks, retention, …). It is
known only after the fetch, so the worker looks it up then, before probing and encoding.

A hit copies the earlier job's objects into the new job's own folder rather than pointing at them: each
job then owns its outputs, so retention, legal holds, the stored-bytes quota and a later deletion of
either job act on one job's files only, and the output URIs follow the usual layout. A copy inside one
store costs far less than an encode. Only a source whose objects all lie in its own folder can be copied
that way; a job with explicit `destination`s names the very objects its predecessor wrote, so it encodes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.core.spec import JobSpec
from framefleet.core.states import JobState
from framefleet.db.models import Job, JobOutput, StoredObject
from framefleet.lifecycle import ledger

# Spec fields that change when or how a job runs, or what happens around it, but not its outputs' bytes.
NOT_IN_KEY = frozenset(
    {"input", "priority", "max_run_seconds", "metadata", "notify", "depends_on", "retention", "cache"}
)
FINGERPRINT = "sha256"


def fingerprint(hexdigest: str) -> str:
    """How an input's content hash is written on the job (`sha256:<hex>`)."""
    return f"{FINGERPRINT}:{hexdigest}"


def cache_key(input_fingerprint: str, spec: JobSpec) -> str:
    """The key two jobs share exactly when their input content and output-shaping spec are the same."""
    shaped = {k: v for k, v in spec.model_dump(mode="json", by_alias=True).items() if k not in NOT_IN_KEY}
    text = json.dumps(shaped, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(f"{input_fingerprint}\n{text}".encode()).hexdigest()


def source_for(
    session: Session, *, tenant_id: int, key: str, exclude: str
) -> tuple[Job, list[StoredObject], list[JobOutput]] | None:
    """The tenant's latest succeeded job with this key whose outputs were not expired, with its live
    objects and output rows; None when there is none."""
    job = session.scalar(
        sa.select(Job)
        .where(
            Job.tenant_id == tenant_id,
            Job.cache_key == key,
            Job.state == JobState.succeeded.value,
            Job.expired_at.is_(None),
            Job.id != exclude,
        )
        .order_by(Job.finished_at.desc(), Job.id)
        .limit(1)
    )
    if job is None:
        return None
    objects = ledger.live_objects(session, job_id=job.id)
    outputs = list(
        session.scalars(sa.select(JobOutput).where(JobOutput.job_id == job.id).order_by(JobOutput.id))
    )
    if not objects:
        return None
    return job, objects, outputs


def rebase(value: Any, old: str, new: str) -> Any:
    """`value` with every string under the folder `old` moved under `new` (URIs in rows and details)."""
    if isinstance(value, str):
        return new + value[len(old) :] if value.startswith(old) else value
    if isinstance(value, list):
        return [rebase(v, old, new) for v in value]
    if isinstance(value, dict):
        return {k: rebase(v, old, new) for k, v in value.items()}
    return value


def copied_row(row: JobOutput, *, job_id: str, old: str, new: str) -> JobOutput:
    """The output row of the new job for one of its source's rows (same facts, URIs in its own folder)."""
    return JobOutput(
        job_id=job_id,
        name=row.name,
        uri=rebase(row.uri, old, new),
        container=row.container,
        size_bytes=row.size_bytes,
        duration_seconds=row.duration_seconds,
        bitrate_kbps=row.bitrate_kbps,
        width=row.width,
        height=row.height,
        video_codec=row.video_codec,
        audio_codec=row.audio_codec,
        metrics=row.metrics,
        metrics_log_uri=rebase(row.metrics_log_uri, old, new),
        kind=row.kind,
        group_name=row.group_name,
        details=rebase(row.details, old, new),
    )

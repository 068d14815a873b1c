"""The schema. The database is the source of truth for every job; Redis only carries messages."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC datetimes on every backend (SQLite forgets the zone otherwise)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map = {datetime: UTCDateTime(), dict[str, Any]: sa.JSON()}


class Tenant(Base):
    __tablename__ = "tenants"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(sa.String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # Tenancy (migration 0005): active | suspended (framefleet/tenancy), why, and free-form settings.
    status: Mapped[str] = mapped_column(sa.String(16), default="active", server_default="active")
    status_reason: Mapped[str | None] = mapped_column(sa.Text, default=None)
    settings: Mapped[dict[str, Any]] = mapped_column(default=dict, server_default="{}")
    updated_at: Mapped[datetime | None] = mapped_column(default=None)


class ApiKey(Base):
    __tablename__ = "api_keys"

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    prefix: Mapped[str] = mapped_column(sa.String(16))
    key_hash: Mapped[str] = mapped_column(sa.String(64), unique=True)
    role: Mapped[str] = mapped_column(sa.String(16), default="admin")
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    revoked_at: Mapped[datetime | None] = mapped_column(default=None)
    # Migration 0005: expiry, a note, the networks it may be used from, who made it, when last seen
    # (written at most once a minute per key and API process), and the key a rotation replaced.
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    description: Mapped[str | None] = mapped_column(sa.String(255), default=None)
    allowed_cidrs: Mapped[list[str] | None] = mapped_column(sa.JSON, default=None)
    created_by: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    last_used_at: Mapped[datetime | None] = mapped_column(default=None)
    replaces_id: Mapped[int | None] = mapped_column(default=None)


class AuditEvent(Base):
    """One state-changing request or admin action. Append-only: the application never updates or deletes."""

    __tablename__ = "audit_events"
    __table_args__ = (sa.Index("ix_audit_tenant_id", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # The actor: a key (id and prefix) or the operator's shell ("cli"); names are copied, not joined, so a
    # row stays readable after its key or tenant is gone.
    actor: Mapped[str] = mapped_column(sa.String(64))
    key_id: Mapped[int | None] = mapped_column(default=None)
    key_prefix: Mapped[str | None] = mapped_column(sa.String(16), default=None)
    tenant_id: Mapped[int | None] = mapped_column(default=None)
    tenant: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    role: Mapped[str | None] = mapped_column(sa.String(16), default=None)
    action: Mapped[str] = mapped_column(sa.String(64))
    target: Mapped[str | None] = mapped_column(sa.String(255), default=None)
    outcome: Mapped[str] = mapped_column(sa.String(16))
    status: Mapped[int | None] = mapped_column(default=None)
    client_ip: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    request_id: Mapped[str | None] = mapped_column(sa.String(128), default=None)
    details: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, default=None)


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_jobs_tenant_idempotency"),
        sa.Index("ix_jobs_tenant_created", "tenant_id", "created_at", "id"),
        sa.Index("ix_jobs_state", "state"),
        # Quota checks count one tenant's jobs in a state, bounded by the quota (tenancy/quotas.py).
        sa.Index("ix_jobs_tenant_state", "tenant_id", "state"),
        sa.Index("ix_jobs_state_retry_at", "state", "retry_at"),
        # The retention sweep reads due jobs in order; the cache looks a key up within one tenant.
        sa.Index("ix_jobs_expires_at", "expires_at"),
        sa.Index("ix_jobs_inputs_expire_at", "inputs_expire_at"),
        sa.Index("ix_jobs_tenant_cache_key", "tenant_id", "cache_key"),
        # GET /v1/pools reads each pool's recent endings and arrivals (scheduling/pools.py; migration 0015).
        sa.Index("ix_jobs_pool_finished", "pool", "finished_at"),
        sa.Index("ix_jobs_pool_created", "pool", "created_at"),
        # The SLO summary's range: jobs of a priority claimed since a time (observability/slo.py).
        sa.Index("ix_jobs_priority_started", "priority", "started_at"),
        # GET /v1/jobs?template= within one tenant (migration 0022).
        sa.Index("ix_jobs_tenant_template", "tenant_id", "template_name"),
    )

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    state: Mapped[str] = mapped_column(sa.String(16))
    priority: Mapped[str] = mapped_column(sa.String(16))
    hardware: Mapped[str] = mapped_column(sa.String(8))
    pool: Mapped[str] = mapped_column(sa.String(8))
    spec: Mapped[dict[str, Any]] = mapped_column()
    spec_hash: Mapped[str] = mapped_column(sa.String(64))
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(255), default=None)
    attempt: Mapped[int] = mapped_column(default=0)
    worker: Mapped[str | None] = mapped_column(sa.String(255), default=None)
    cancel_requested: Mapped[bool] = mapped_column(default=False)
    # Who asked to cancel it while it ran: the worker's `canceled` history row names them (migration 0009).
    cancel_requested_by: Mapped[str | None] = mapped_column(sa.String(80), default=None)
    progress: Mapped[float] = mapped_column(default=0.0)
    failure_class: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    error: Mapped[str | None] = mapped_column(sa.Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    finished_at: Mapped[datetime | None] = mapped_column(default=None)
    # Scheduling (migration 0003): when it last entered `queued`, the queue it waits in after aging,
    # failed attempts so far, when a `retrying` job is due, its run-time limit, and GPU workers to avoid.
    queued_at: Mapped[datetime | None] = mapped_column(default=None)
    effective_priority: Mapped[str | None] = mapped_column(sa.String(16), default=None)
    failures: Mapped[int] = mapped_column(default=0, server_default="0")
    retry_at: Mapped[datetime | None] = mapped_column(default=None)
    max_run_seconds: Mapped[int | None] = mapped_column(default=None)
    run_limit_seconds: Mapped[float | None] = mapped_column(default=None)
    avoid_workers: Mapped[list[str] | None] = mapped_column(sa.JSON, default=None)
    # Why a `pending` job waits (migration 0005), e.g. "tenant-suspended"; None otherwise.
    pending_reason: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    # What all attempts so far consumed and cost (migration 0008, observability/cost.py); None before any.
    usage: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, default=None)
    # Data lifecycle (migration 0014, storage/lifecycle.py): a legal hold stops every deletion; when the
    # job's outputs and inputs fall due (set at its ending from the spec's or tenant's retention); when the
    # outputs were deleted (the row stays, its outputs shown `expired`).
    legal_hold: Mapped[bool] = mapped_column(default=False, server_default=sa.false())
    expires_at: Mapped[datetime | None] = mapped_column(default=None)
    inputs_expire_at: Mapped[datetime | None] = mapped_column(default=None)
    expired_at: Mapped[datetime | None] = mapped_column(default=None)
    # Result cache (storage/cache.py): the input's content hash, the key of (fingerprint, normalised spec)
    # a later job may match, and the job whose outputs this one copied instead of encoding.
    input_fingerprint: Mapped[str | None] = mapped_column(sa.String(80), default=None)
    cache_key: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    cached_from: Mapped[str | None] = mapped_column(sa.String(36), default=None)
    # The workflow run this job is a step of, and the step's name (migration 0012); None for a lone job.
    workflow_id: Mapped[str | None] = mapped_column(sa.String(36), default=None, index=True)
    workflow_step: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    # The W3C traceparent of the job's intake span when tracing is on (migration 0016): publishes that
    # happen later (retries, the reconciler) and webhook deliveries join the job's trace through it.
    trace_context: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    # The template (name, version) the job was made from (migration 0022); None for a job sent as a spec.
    template_name: Mapped[str | None] = mapped_column(sa.String(128), default=None)
    template_version: Mapped[int | None] = mapped_column(default=None)


class StoredObject(Base):
    """One object a job published (or an input it may delete), or a finished upload's content, with its
    size (migrations 0014, 0021).

    The ledger retention deletes from and the cache copies from: a group's segments are objects too,
    though they have no output row. `deleted_at` is set when retention removed it. An upload's object
    (role `upload`, no job) carries its content's `sha256`: the tenant's uploads of the same bytes all
    reference it (`uploads.object_id`), and it is deleted with the last of them.
    """

    __tablename__ = "stored_objects"
    __table_args__ = (
        sa.Index("ix_stored_objects_job", "job_id"),
        sa.Index("ix_stored_objects_tenant_sha256", "tenant_id", "sha256"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    job_id: Mapped[str | None] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"))
    role: Mapped[str] = mapped_column(sa.String(8), default="output")  # output | input | upload
    uri: Mapped[str] = mapped_column(sa.Text)
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    sha256: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    deleted_at: Mapped[datetime | None] = mapped_column(default=None)


class TenantStorage(Base):
    """Bytes a tenant has stored now: added when outputs are published, taken off when they are deleted
    (migration 0014). A counter, so the quota check at submission reads one row."""

    __tablename__ = "tenant_storage"

    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    stored_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)
    objects: Mapped[int] = mapped_column(default=0)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class Workflow(Base):
    """A workflow run: a named DAG of steps submitted as one unit (migration 0012, workflows/runs.py).

    Each step is a job whose `workflow_id` points here; the run's status is derived from its jobs' states,
    never stored, so it cannot disagree with them.
    """

    __tablename__ = "workflows"
    __table_args__ = (sa.Index("ix_workflows_tenant_created", "tenant_id", "created_at", "id"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(64))
    # Step names in submission order (the order views list them in).
    steps: Mapped[list[str]] = mapped_column(sa.JSON)
    created_by: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobDependency(Base):
    """An edge of the job graph: `job_id` waits in `pending` for `parent_id` to end (migration 0010).

    Rows are written with the job and never change; the sweep (workflows/dependencies.py) judges the
    parents' states against `condition` and releases or ends the dependant.
    """

    __tablename__ = "job_dependencies"
    __table_args__ = (sa.Index("ix_job_dependencies_parent", "parent_id"),)

    job_id: Mapped[str] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    parent_id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    condition: Mapped[str] = mapped_column(sa.String(16), default="succeeded")


class Schedule(Base):
    """A tenant's cron schedule: a job spec submitted at each fire time (migration 0010).

    `next_run_at` is the next fire time in UTC, moved forward by the beat leader in the transaction that
    records the fire; `catch_up` says what a fire missed during an outage does (`once`: run once on
    recovery; `skip`: run at the next regular time only).
    """

    __tablename__ = "schedules"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "name", name="uq_schedules_tenant_name"),
        sa.Index("ix_schedules_due", "enabled", "next_run_at"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(64))
    cron: Mapped[str] = mapped_column(sa.String(128))
    timezone: Mapped[str] = mapped_column(sa.String(64), default="UTC")
    spec: Mapped[dict[str, Any]] = mapped_column()
    enabled: Mapped[bool] = mapped_column(default=True)
    catch_up: Mapped[str] = mapped_column(sa.String(8), default="once")
    next_run_at: Mapped[datetime | None] = mapped_column(default=None)
    last_fire_at: Mapped[datetime | None] = mapped_column(default=None)
    created_by: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScheduleFire(Base):
    """One fire of a schedule, recorded once: the unique (schedule, fire time) row is what keeps a second
    beat (after a failover, or one that briefly believes it leads) from submitting the same fire again."""

    __tablename__ = "schedule_fires"
    __table_args__ = (
        sa.UniqueConstraint("schedule_id", "fire_at", name="uq_schedule_fires_time"),
        sa.Index("ix_schedule_fires_schedule", "schedule_id", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    schedule_id: Mapped[int] = mapped_column(sa.ForeignKey("schedules.id", ondelete="CASCADE"))
    fire_at: Mapped[datetime] = mapped_column()
    at: Mapped[datetime] = mapped_column(default=utcnow)
    job_id: Mapped[str | None] = mapped_column(sa.String(36), default=None)
    # Why no job was made (the spec no longer valid, the tenant suspended); None when one was.
    error: Mapped[str | None] = mapped_column(sa.Text, default=None)


class Worker(Base):
    """One job-running worker process: its pool, proven capabilities and heartbeat (history kept)."""

    __tablename__ = "workers"
    __table_args__ = (sa.Index("ix_workers_last_heartbeat", "last_heartbeat"),)

    id: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    node: Mapped[str] = mapped_column(sa.String(255))
    host: Mapped[str] = mapped_column(sa.String(255))
    pid: Mapped[int] = mapped_column()
    pool: Mapped[str] = mapped_column(sa.String(8))
    capabilities: Mapped[dict[str, Any]] = mapped_column()
    started_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_heartbeat: Mapped[datetime] = mapped_column(default=utcnow)
    stopped_at: Mapped[datetime | None] = mapped_column(default=None)
    current_job: Mapped[str | None] = mapped_column(sa.String(36), default=None)
    current_attempt: Mapped[int | None] = mapped_column(default=None)
    jobs_done: Mapped[int] = mapped_column(default=0, server_default="0")


class WorkerControl(Base):
    """An operator's hold on one worker node (migration 0015): `cordoned` (takes no new job) or `draining`
    (the same, shown as drained once its running jobs ended). Kept across the node's restarts until
    uncordoned, so a restarted host does not start taking work behind the operator's back."""

    __tablename__ = "worker_controls"

    node: Mapped[str] = mapped_column(sa.String(255), primary_key=True)
    state: Mapped[str] = mapped_column(sa.String(16))
    reason: Mapped[str] = mapped_column(sa.Text, default="", server_default="")
    actor: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    at: Mapped[datetime] = mapped_column(default=utcnow)


class JobTransition(Base):
    __tablename__ = "job_transitions"

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    from_state: Mapped[str | None] = mapped_column(sa.String(16))
    to_state: Mapped[str] = mapped_column(sa.String(16))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    reason: Mapped[str] = mapped_column(sa.Text, default="")
    worker: Mapped[str | None] = mapped_column(sa.String(255), default=None)
    attempt: Mapped[int] = mapped_column(default=0)
    # Who asked for this change when a client did (a key's "key:<id>:<prefix>"; migration 0005).
    actor: Mapped[str | None] = mapped_column(sa.String(64), default=None)


class TenantUsage(Base):
    """What a tenant used in one calendar month (UTC), counted when its jobs succeed (migration 0007).

    Kept as counters so that quota checks and reports read a few rows, never the tenant's jobs;
    tenancy/usage.py `reconcile` recomputes them from the jobs and outputs.
    """

    __tablename__ = "tenant_usage"

    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True)
    period: Mapped[str] = mapped_column(sa.String(7), primary_key=True)  # "2026-12"
    jobs_succeeded: Mapped[int] = mapped_column(default=0)
    media_seconds: Mapped[float] = mapped_column(default=0.0)
    output_bytes: Mapped[int] = mapped_column(sa.BigInteger, default=0)


class JobChunk(Base):
    """One piece of a split-and-stitch attempt (migration 0019): an `encode` chunk of source frames, or the
    attempt's one `join` row, whose `pending` counts the chunks not yet done (worker/chunked.py).

    States: waiting (the join, until its chunks are done) → queued → running → done, or stopped when its
    run ended the attempt (canceled, failed). `attempt` counts the chunk's own deliveries; a lost chunk
    goes back to queued alone (scheduling/chunks.py).
    """

    __tablename__ = "job_chunks"
    __table_args__ = (sa.Index("ix_job_chunks_state", "state"),)

    job_id: Mapped[str] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), primary_key=True)
    job_attempt: Mapped[int] = mapped_column(primary_key=True)
    index: Mapped[int] = mapped_column(primary_key=True)
    kind: Mapped[str] = mapped_column(sa.String(8))
    state: Mapped[str] = mapped_column(sa.String(8))
    attempt: Mapped[int] = mapped_column(default=0, server_default="0")
    worker: Mapped[str | None] = mapped_column(sa.String(255), default=None)
    start_frame: Mapped[int] = mapped_column()
    frames: Mapped[int] = mapped_column()
    seek: Mapped[float] = mapped_column()
    seconds: Mapped[float] = mapped_column()
    pending: Mapped[int] = mapped_column(default=0, server_default="0")
    progress: Mapped[float] = mapped_column(default=0.0, server_default="0")
    details: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, default=None)
    started_at: Mapped[datetime | None] = mapped_column(default=None)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobOutput(Base):
    __tablename__ = "job_outputs"
    __table_args__ = (sa.UniqueConstraint("job_id", "name", name="uq_job_outputs_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    job_id: Mapped[str] = mapped_column(sa.ForeignKey("jobs.id", ondelete="CASCADE"), index=True)
    # "<output>", or "<group>/<rung>" for the members of an output group (migration 0004 widened it).
    name: Mapped[str] = mapped_column(sa.String(160))
    uri: Mapped[str] = mapped_column(sa.Text)
    container: Mapped[str] = mapped_column(sa.String(8))
    size_bytes: Mapped[int] = mapped_column(sa.BigInteger)
    duration_seconds: Mapped[float | None] = mapped_column(default=None)
    bitrate_kbps: Mapped[float | None] = mapped_column(default=None)
    width: Mapped[int | None] = mapped_column(default=None)
    height: Mapped[int | None] = mapped_column(default=None)
    video_codec: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    audio_codec: Mapped[str | None] = mapped_column(sa.String(32), default=None)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, default=None)
    metrics_log_uri: Mapped[str | None] = mapped_column(sa.Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    # What the row is (OUTPUT_KINDS), the group or picture set it belongs to, and kind-specific facts
    # (a rendition's codecs and rates, a manifest's dropped rungs, a thumbnail set's files and times).
    kind: Mapped[str] = mapped_column(sa.String(16), default="file", server_default="file")
    group_name: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    details: Mapped[dict[str, Any] | None] = mapped_column(sa.JSON, default=None)

    def group_view(self) -> dict[str, Any]:
        """The fields that place this row in its group, for the public output view."""
        return {"kind": self.kind, "group": self.group_name, "details": self.details}


# Kinds of job output rows: plain files, image sequences, group members and manifests, still pictures.
OUTPUT_KINDS = (
    "file",
    "images",
    "manifest",
    "rendition",
    "audio",
    "thumbnails",
    "sprites",
    "vtt",
    "poster",
)


class WebhookEndpoint(Base):
    """A tenant's webhook receiver (kind `endpoint`), or the tenant's signing secret for per-job `notify`
    URLs (kind `notify`, no URL). Secrets are stored encrypted (framefleet/tenancy/secrets.py)."""

    __tablename__ = "webhook_endpoints"
    __table_args__ = (sa.Index("ix_webhook_endpoints_tenant", "tenant_id", "id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(sa.String(16), default="endpoint")
    url: Mapped[str] = mapped_column(sa.Text, default="")
    event_types: Mapped[list[str]] = mapped_column(sa.JSON, default=list)
    description: Mapped[str | None] = mapped_column(sa.String(255), default=None)
    enabled: Mapped[bool] = mapped_column(default=True)
    secret: Mapped[str] = mapped_column(sa.Text)
    # After a rotation the previous secret still signs (a second v1=) until previous_secret_until.
    previous_secret: Mapped[str | None] = mapped_column(sa.Text, default=None)
    previous_secret_until: Mapped[datetime | None] = mapped_column(default=None)
    # Health: `ok`, or `failing` once a delivery was given up (until the next accepted one).
    status: Mapped[str] = mapped_column(sa.String(16), default="ok")
    failing_since: Mapped[datetime | None] = mapped_column(default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class WebhookEvent(Base):
    """One job event to tell receivers about; its id is the receivers' idempotency key."""

    __tablename__ = "webhook_events"
    __table_args__ = (sa.UniqueConstraint("job_id", "sequence", name="uq_webhook_events_job_sequence"),)

    id: Mapped[str] = mapped_column(sa.String(36), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    job_id: Mapped[str] = mapped_column(sa.String(36))
    sequence: Mapped[int] = mapped_column()
    type: Mapped[str] = mapped_column(sa.String(32))
    at: Mapped[datetime] = mapped_column(default=utcnow)
    # The feed entry it came from: a feed entry read twice (after a crash) makes no second event.
    source: Mapped[str] = mapped_column(sa.String(64), unique=True)
    body: Mapped[dict[str, Any]] = mapped_column()


class WebhookDelivery(Base):
    """One event to one target (an endpoint, or a job's notify URL): the source of truth for sending."""

    __tablename__ = "webhook_deliveries"
    __table_args__ = (
        sa.Index("ix_webhook_deliveries_due", "state", "next_attempt_at"),
        sa.Index("ix_webhook_deliveries_order", "job_id", "target", "sequence"),
        sa.Index("ix_webhook_deliveries_endpoint", "endpoint_id", "id"),
    )

    id: Mapped[int] = mapped_column(sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True)
    event_id: Mapped[str] = mapped_column(sa.ForeignKey("webhook_events.id", ondelete="CASCADE"))
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    endpoint_id: Mapped[int | None] = mapped_column(
        sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"), default=None
    )
    url: Mapped[str] = mapped_column(sa.Text)
    # What ordering is kept per: "endpoint:<id>" or "notify:<url>".
    target: Mapped[str] = mapped_column(sa.String(255))
    job_id: Mapped[str] = mapped_column(sa.String(36))
    sequence: Mapped[int] = mapped_column()
    # pending -> sending -> succeeded | failed (given up); a `sending` row whose lease passed is pending.
    state: Mapped[str] = mapped_column(sa.String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(default=None)
    response_status: Mapped[int | None] = mapped_column(default=None)
    response_excerpt: Mapped[str | None] = mapped_column(sa.Text, default=None)
    latency_ms: Mapped[float | None] = mapped_column(default=None)
    error: Mapped[str | None] = mapped_column(sa.Text, default=None)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    delivered_at: Mapped[datetime | None] = mapped_column(default=None)


class OutputPreset(Base):
    """A tenant's named output settings (framefleet/workflows/presets.py); the built-in ones are in code."""

    __tablename__ = "output_presets"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_output_presets_tenant_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(64))
    description: Mapped[str | None] = mapped_column(sa.String(255), default=None)
    # An output's fields (no name, no destination): what an output naming the preset starts from.
    output: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobTemplate(Base):
    """One version of a tenant's job template (framefleet/workflows/templates.py): versions are never
    changed, an update adds the next one."""

    __tablename__ = "job_templates"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "name", "version", name="uq_job_templates_tenant_name_version"),
    )

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(64))
    version: Mapped[int] = mapped_column()
    description: Mapped[str | None] = mapped_column(sa.String(255), default=None)
    parameters: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    spec: Mapped[dict[str, Any]] = mapped_column(sa.JSON)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class Upload(Base):
    """A resumable upload (tus) of one tenant (migration 0013): staged in a part file until its last byte,
    then published to the tenant's storage, where `uri` names it (`upload://<id>` resolves to it). Once
    complete it references its content's ledger object (`object_id`, migration 0021), shared by the
    tenant's uploads of the same bytes."""

    __tablename__ = "uploads"
    # The sweep of abandoned uploads reads open ones by expiry.
    __table_args__ = (sa.Index("ix_uploads_state_expires", "state", "expires_at"),)

    id: Mapped[str] = mapped_column(sa.String(32), primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"), index=True)
    length: Mapped[int] = mapped_column(sa.BigInteger)
    filename: Mapped[str] = mapped_column(sa.String(200))
    state: Mapped[str] = mapped_column(sa.String(16), default="open")  # open | complete
    uri: Mapped[str | None] = mapped_column(sa.Text, default=None)
    object_id: Mapped[int | None] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer, "sqlite"),
        sa.ForeignKey("stored_objects.id", name="fk_uploads_object_id"),
        index=True,
        default=None,
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime] = mapped_column()


class StorageProfile(Base):
    """A tenant's named storage location (migration 0013): `storage://<name>/<path>` (storage/profiles.py).
    `credentials` holds an encrypted token of the JSON credentials (tenancy/secrets.py), never plaintext."""

    __tablename__ = "storage_profiles"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_storage_profiles_tenant_name"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    tenant_id: Mapped[int] = mapped_column(sa.ForeignKey("tenants.id", ondelete="CASCADE"))
    name: Mapped[str] = mapped_column(sa.String(64))
    kind: Mapped[str] = mapped_column(sa.String(8))  # s3 | azure | gcs | file
    bucket: Mapped[str] = mapped_column(sa.Text)
    prefix: Mapped[str] = mapped_column(sa.Text, default="")
    endpoint: Mapped[str | None] = mapped_column(sa.Text, default=None)
    region: Mapped[str | None] = mapped_column(sa.String(64), default=None)
    credentials: Mapped[str | None] = mapped_column(sa.Text, default=None)
    # Where the tenant's jobs write when their outputs name no destination (set by an operator).
    default_output: Mapped[bool] = mapped_column(default=False)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)

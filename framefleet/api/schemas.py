"""Response shapes, for the OpenAPI document. Routes answer with job_view dicts of exactly these fields."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field


class OutputView(BaseModel):
    name: str
    uri: str
    container: str
    size_bytes: int
    duration_seconds: float | None
    bitrate_kbps: float | None
    width: int | None
    height: int | None
    video_codec: str | None
    audio_codec: str | None
    metrics: dict[str, Any] | None
    metrics_log_uri: str | None
    kind: str
    group: str | None
    details: dict[str, Any] | None
    status: str = Field(
        default="stored", description="`stored`, or `expired` once retention deleted the job's files"
    )


class JobView(BaseModel):
    id: str
    state: str
    priority: str
    hardware: str
    pool: str
    attempt: int
    progress: float
    cancel_requested: bool
    failure_class: str | None
    error: str | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    effective_priority: str = Field(
        description="The queue the job waits in: its priority, or a higher one after waiting long (aging)"
    )
    failures: int = Field(description="Failed attempts so far; a hand-back at worker shutdown does not count")
    retry_at: datetime | None = Field(description="When a `retrying` job is queued again")
    max_run_seconds: int | None = Field(
        description="Run-time limit of each attempt set at submission; null: derived from the input duration"
    )
    pending_reason: str | None = Field(
        default=None, description="Why a `pending` job waits, e.g. `tenant-suspended`; null otherwise"
    )
    template: dict[str, Any] | None = Field(
        default=None,
        description="The template the job was made from ({name, version}); null for a job sent as a spec",
    )
    usage: dict[str, Any] | None = Field(
        default=None,
        description="What all attempts consumed: cpu_seconds, wall_seconds, gpu_seconds, joules (CPU and "
        "GPU), joules_source (rapl, rapl+nvml, nvml or estimated), gpu_joules, cost and attempts; null "
        "before the first attempt ends",
    )
    cost: dict[str, Any] | None = Field(
        default=None,
        description="The job's cost so far: {amount, currency}; null before the first attempt ends",
    )
    legal_hold: bool = Field(default=False, description="Under legal hold: retention deletes nothing of it")
    expires_at: datetime | None = Field(default=None, description="When retention deletes the outputs")
    expired_at: datetime | None = Field(default=None, description="When retention deleted the outputs")
    cache_hit: bool = Field(default=False, description="Outputs copied from an earlier identical job")
    cached_from: str | None = Field(default=None, description="The job a cache hit copied its outputs from")
    input_fingerprint: str | None = Field(
        default=None, description="The input's content hash, `sha256:<hex>`"
    )
    spec: dict[str, Any]
    outputs: list[OutputView] | None = None


class JobPage(BaseModel):
    items: list[JobView]
    next_cursor: str | None


class TransitionView(BaseModel):
    from_state: str | None
    to_state: str
    at: datetime
    reason: str
    worker: str | None
    attempt: int
    actor: str | None = Field(
        default=None, description="The key that asked for this change (key:<id>:<prefix>)"
    )


class JobHistory(BaseModel):
    job_id: str
    items: list[TransitionView]


class ValidationItem(BaseModel):
    field: str
    message: str
    type: str


class ProblemView(BaseModel):
    type: str
    title: str
    status: int
    detail: str | None
    instance: str
    errors: list[ValidationItem] | None = None

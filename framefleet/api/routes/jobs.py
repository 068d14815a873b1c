"""Job routes: parse, authorize, call framefleet.jobs.service, answer."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Header, Query, Request
from pydantic import BaseModel, ConfigDict
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.responses import Response, StreamingResponse

from framefleet.api import metrics
from framefleet.api.deps import RedisDep, SessionDep, SettingsDep, ThreadSessionDep, in_thread, requires
from framefleet.api.errors import Problem, validation_problem
from framefleet.api.hub import EventHub
from framefleet.api.limits import StreamLimits
from framefleet.api.responses import json_response
from framefleet.api.schemas import JobHistory, JobPage, JobView, ProblemView
from framefleet.api.sse import (
    STREAM_LIMIT_RESPONSES,
    EventStreamResponse,
    done_grace,
    ended_stream,
    live_stream,
)
from framefleet.config import Settings
from framefleet.core.spec import JobSpec, Priority
from framefleet.core.states import TERMINAL, JobState
from framefleet.core.timeouts import TimeLimits, override_error
from framefleet.db.models import Job, utcnow
from framefleet.db.session import session_scope
from framefleet.events import is_valid_id
from framefleet.jobs import service
from framefleet.jobs.admission import admit
from framefleet.jobs.intake import Intake
from framefleet.jobs.locations import location_problem
from framefleet.keys import Principal
from framefleet.lifecycle import retention
from framefleet.scheduling.registry import WorkerCache
from framefleet.storage.namespace import Namespace, namespace_for
from framefleet.tenancy import quotas
from framefleet.tenancy import service as tenancy_service
from framefleet.tenancy.permissions import allows
from framefleet.workflows import batch, dependencies

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

# Retry-After on a quota refusal: waiting jobs start and end within seconds to minutes.
QUOTA_RETRY_AFTER_SECONDS = 30

Reader = Annotated[Principal, requires("jobs:read")]
Submitter = Annotated[Principal, requires("jobs:submit")]
Canceler = Annotated[Principal, requires("jobs:cancel")]
Holder = Annotated[Principal, requires("jobs:hold")]
TenantQuery = Annotated[
    str | None,
    Query(
        max_length=64,
        description="another tenant's name: its jobs, read-only (needs the permission jobs:read:any)",
    ),
]

Responses = dict[int | str, dict[str, Any]]
_AUTH: Responses = {401: {"model": ProblemView, "description": "Missing or unknown API key"}}
_NOT_FOUND: Responses = {404: {"model": ProblemView, "description": "No such job for this tenant"}}
_INVALID: Responses = {
    422: {"model": ProblemView, "description": "Invalid request; `errors` names each field"}
}
_FORBIDDEN: Responses = {
    403: {
        "model": ProblemView,
        "description": "The key's role lacks the permission, or its tenant is suspended",
    }
}


def time_limits(settings: Settings) -> TimeLimits:
    """The run-time limit rules of these settings."""
    return TimeLimits(
        settings.timeout_factor, settings.timeout_floor_seconds, float(settings.job_max_seconds)
    )


def _not_found(job_id: str) -> Problem:
    return Problem("not-found", f"no job {job_id}")


def _location(job: Job) -> str:
    return f"/v1/jobs/{job.id}"


@router.post(
    "",
    status_code=201,
    response_model=JobView,
    responses={
        200: {"model": JobView, "description": "Replay: this Idempotency-Key already created the job"},
        409: {"model": ProblemView, "description": "Idempotency-Key reused with a different body"},
        415: {"model": ProblemView, "description": "The body is not sent as application/json"},
        **_AUTH,
        **_FORBIDDEN,
        **_INVALID,
        429: {
            "model": ProblemView,
            "description": "Rate limit spent (`rate-limited`) or a quota full (`quota-exceeded`: `quota`, "
            "`usage`, `limit`); see Retry-After",
        },
    },
    summary="Submit a job",
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/JobSpec"},
                            {"$ref": "#/components/schemas/TemplateCall"},
                        ]
                    }
                }
            },
        }
    },
)
async def submit(
    body: Annotated[dict[str, Any], Body(description="a JobSpec, or a template call")],
    session: ThreadSessionDep,
    principal: Submitter,
    request: Request,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=255)
    ] = None,
) -> Response:
    """Validate and record a job, then hand it to its queue. 201 when created, 200 on an idempotent replay.

    The body is a job spec (its outputs may name presets) or a template call
    (`{"template": name, "version": n, "params": {...}}`). 422 when no known worker could ever run the job
    (the reason names the missing capability). Runs on the event loop: what needs the database runs in
    threads (the intake's writer, presets and templates, and the idempotency and worker lookups when they
    cannot be answered from memory).
    """
    if batch.needs_database(body):
        spec, document, template = await in_thread(session, _resolve_in, principal, body)
    else:
        spec, document, template = _resolve(batch.Resolver(None, principal.tenant_id), body)
    workers = None
    if settings.admission_check:
        cache: WorkerCache = request.app.state.worker_cache
        workers = cache.fresh()
        if workers is None:
            workers = await in_thread(session, cache.get, settings)
    row = checked_row(
        spec=spec,
        document=document,
        principal=principal,
        settings=settings,
        workers=workers,
        idempotency_key=idempotency_key,
        template=template,
    )
    if spec.depends_on:
        await in_thread(session, check_parents, principal, spec)
    if idempotency_key is not None:
        replay = await in_thread(session, _replay, principal, idempotency_key, row["spec_hash"])
        if replay is not None:
            return replay
    if principal.quotas != quotas.Quotas():
        over = await in_thread(session, _quota_over, principal)
        if over is not None:
            raise quota_problem(principal, over)
    intake: Intake = request.app.state.intake
    try:
        job = await asyncio.wrap_future(intake.enqueue(row))
    except IntegrityError:
        # A concurrent request with the same Idempotency-Key won the insert.
        replay = await in_thread(session, _replay_after_race, principal, idempotency_key, row)
        if replay is None:
            raise
        return replay
    metrics.JOBS_SUBMITTED.labels(job.priority).inc()
    return json_response(service.job_view(job, []), 201, {"Location": _location(job)})


def submission_problem(exc: batch.SubmissionInvalid) -> Problem:
    """The 422 for a submission that does not resolve to a valid spec."""
    first = exc.errors[0]
    detail = f"{first['field']}: {first['message']}" if first["field"] else first["message"]
    if len(exc.errors) > 1:
        detail += f" (and {len(exc.errors) - 1} more)"
    return Problem("validation", detail, errors=exc.errors)


Resolved = tuple[JobSpec, dict[str, Any], tuple[str, int] | None]


def _resolve(resolver: batch.Resolver, body: dict[str, Any]) -> Resolved:
    """The spec, its document and the (name, version) of the template it was made from, if any."""
    try:
        spec, document = resolver.resolve(body)
    except batch.SubmissionInvalid as exc:
        raise submission_problem(exc) from None
    return spec, document, resolver.origin(body)


def _resolve_in(session: Session, principal: Principal, body: dict[str, Any]) -> Resolved:
    return _resolve(batch.Resolver(session, principal.tenant_id), body)


def quota_problem(principal: Principal, over: quotas.Over) -> Problem:
    return Problem(
        "quota-exceeded",
        f"tenant {principal.tenant!r} has spent its {over.quota} quota: {over.usage:g} of {over.limit}",
        headers={"Retry-After": str(QUOTA_RETRY_AFTER_SECONDS)},
        extensions={"quota": over.quota, "usage": over.usage, "limit": over.limit},
    )


def checked_row(
    *,
    spec: JobSpec,
    document: dict[str, Any],
    principal: Principal,
    settings: Settings,
    workers: Any,
    idempotency_key: str | None,
    template: tuple[str, int] | None = None,
) -> dict[str, Any]:
    """The new job's row once the deployment's checks pass (time limit, storage area, admission against
    `workers` when admission is on); Problem naming the field otherwise."""
    if spec.max_run_seconds is not None:
        problem = override_error(spec.max_run_seconds, time_limits(settings))
        if problem is not None:
            raise validation_problem("max_run_seconds", problem)
    refused = location_problem(spec, _namespace(settings, principal))
    if refused is not None:
        raise validation_problem(*refused)
    pool = None
    if workers is not None:
        admission = admit(document, workers)
        if not admission.accepted:
            raise Problem(
                "unschedulable",
                admission.reason or "no worker can run this job",
                errors=[
                    {
                        "field": admission.field or "hardware",
                        "message": admission.reason or "",
                        "type": "unschedulable",
                    }
                ],
            )
        pool = admission.pool
    return service.new_job_row(
        principal=principal,
        spec=spec,
        document=document,
        pool=pool,
        idempotency_key=idempotency_key,
        template=template,
    )


def check_parents(session: Session, principal: Principal, spec: JobSpec) -> None:
    """422 naming `depends_on.N` for a parent that is not one of the tenant's jobs."""
    try:
        dependencies.check_parents(session, tenant_id=principal.tenant_id, spec=spec)
    except dependencies.UnknownParent as exc:
        raise validation_problem(exc.field, str(exc)) from exc


def _quota_over(session: Session, principal: Principal) -> quotas.Over | None:
    return quotas.submission_over(
        session, tenant_id=principal.tenant_id, quotas=principal.quotas, now=utcnow()
    )


def as_tenant(session: Session, caller: Principal, tenant: str | None) -> Principal:
    """The caller, or (for a key with jobs:read:any) the caller reading as another tenant."""
    if tenant is None or tenant == caller.tenant:
        return caller
    if not allows(caller.role, "jobs:read:any"):
        raise Problem(
            "forbidden",
            f"role {caller.role!r} may read only its own tenant's jobs",
            extensions={"permission": "jobs:read:any"},
        )
    found = tenancy_service.find_tenant(session, name=tenant)
    if found is None:
        raise Problem("not-found", f"no tenant {tenant!r}")
    return dataclasses.replace(caller, tenant_id=found.id, tenant=found.name)


def _namespace(settings: Settings, principal: Principal) -> Namespace:
    try:
        return namespace_for(settings, principal.tenant)
    except ValueError as exc:
        raise Problem("forbidden", f"tenant {principal.tenant!r} has no storage area: {exc}") from None


def _replay_after_race(
    session: Session, principal: Principal, idempotency_key: str | None, row: dict[str, Any]
) -> Response | None:
    # A fresh read: the request's earlier one may have looked before the winner committed.
    session.rollback()
    return _replay(session, principal, idempotency_key or "", row["spec_hash"])


def _replay(session: Session, principal: Principal, idempotency_key: str, digest: str) -> Response | None:
    """The answer to a repeated request (200 with the job it created), or None for a first one."""
    try:
        job = service.find_replay(
            session, principal=principal, idempotency_key=idempotency_key, digest=digest
        )
    except service.IdempotencyConflict as exc:
        raise Problem("idempotency-conflict", str(exc)) from exc
    if job is None:
        return None
    return json_response(
        service.job_view(job, service.outputs_of(session, job.id)), 200, {"Location": _location(job)}
    )


def _aware(value: datetime | None) -> datetime | None:
    # A time without an offset is taken as UTC.
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@router.get("", response_model=JobPage, responses={**_AUTH, **_FORBIDDEN, **_INVALID}, summary="List jobs")
def list_jobs(
    session: SessionDep,
    caller: Reader,
    tenant: TenantQuery = None,
    state: JobState | None = None,
    priority: Priority | None = None,
    created_after: Annotated[datetime | None, Query(description="ISO 8601; without an offset, UTC")] = None,
    created_before: Annotated[datetime | None, Query(description="ISO 8601; without an offset, UTC")] = None,
    template: Annotated[
        str | None,
        Query(min_length=1, max_length=128, description="jobs made from this template (any version)"),
    ] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of the previous page")
    ] = None,
) -> Response:
    """The tenant's jobs, newest first, a page at a time."""
    principal = as_tenant(session, caller, tenant)
    filters = service.JobFilter(
        state=state,
        priority=priority,
        created_after=_aware(created_after),
        created_before=_aware(created_before),
        template=template,
    )
    try:
        jobs, next_cursor = service.list_jobs(
            session, principal=principal, filters=filters, limit=limit, cursor=cursor
        )
    except service.BadCursor as exc:
        raise validation_problem("cursor", str(exc)) from exc
    return json_response({"items": [service.job_view(job) for job in jobs], "next_cursor": next_cursor})


@router.get(
    "/{job_id}", response_model=JobView, responses={**_AUTH, **_FORBIDDEN, **_NOT_FOUND}, summary="Get a job"
)
def get_job(job_id: str, session: SessionDep, caller: Reader, tenant: TenantQuery = None) -> Response:
    """A job with its outputs."""
    principal = as_tenant(session, caller, tenant)
    try:
        job = service.get_job(session, principal=principal, job_id=job_id)
    except service.JobNotFound as exc:
        raise _not_found(job_id) from exc
    return json_response(service.job_view(job, service.outputs_of(session, job.id)))


@router.get(
    "/{job_id}/history",
    response_model=JobHistory,
    responses={**_AUTH, **_FORBIDDEN, **_NOT_FOUND},
    summary="State history",
)
def job_history(job_id: str, session: SessionDep, caller: Reader, tenant: TenantQuery = None) -> Response:
    """Every state transition of a job, oldest first (`actor`: the key that asked for the change, if any)."""
    principal = as_tenant(session, caller, tenant)
    try:
        job = service.get_job(session, principal=principal, job_id=job_id)
    except service.JobNotFound as exc:
        raise _not_found(job_id) from exc
    items = [
        {
            "from_state": t.from_state,
            "to_state": t.to_state,
            "at": t.at,
            "reason": t.reason,
            "worker": t.worker,
            "attempt": t.attempt,
            "actor": t.actor,
        }
        for t in service.history_of(session, job.id)
    ]
    return json_response({"job_id": job.id, "items": items})


@router.post(
    "/{job_id}/cancel",
    response_model=JobView,
    responses={
        202: {"model": JobView, "description": "Running job: its worker was told to stop (cancel_requested)"},
        409: {"model": ProblemView, "description": "The job already ended"},
        **_AUTH,
        **_FORBIDDEN,
        **_NOT_FOUND,
    },
    summary="Cancel a job",
)
def cancel(
    job_id: str, session: SessionDep, principal: Canceler, redis: RedisDep, settings: SettingsDep
) -> Response:
    """200 when a waiting job is canceled; 202 when a running job is being stopped; 409 once it ended."""
    try:
        job = service.cancel_job(
            session, redis, principal=principal, job_id=job_id, events_ttl_seconds=settings.events_ttl_seconds
        )
    except service.JobNotFound as exc:
        raise _not_found(job_id) from exc
    except service.JobFinished as exc:
        raise Problem("job-finished", str(exc), extensions={"state": exc.state}) from exc
    if job.state == JobState.canceled:
        return json_response(service.job_view(job), 200)
    return json_response(service.job_view(job), 202)


class PriorityChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    priority: Priority


@router.patch(
    "/{job_id}",
    response_model=JobView,
    responses={
        409: {"model": ProblemView, "description": "The job is running or ended (`state`)"},
        **_AUTH,
        **_FORBIDDEN,
        **_NOT_FOUND,
        **_INVALID,
    },
    summary="Change a waiting job's priority",
)
def change(
    job_id: str, change: PriorityChange, session: SessionDep, principal: Submitter, request: Request
) -> Response:
    """Queue hopping: a queued or pending job moves to the queue of its new priority (audited)."""
    try:
        job = service.change_priority(
            session,
            principal=principal,
            job_id=job_id,
            priority=change.priority,
            celery=request.app.state.celery,
        )
    except service.JobNotFound as exc:
        raise _not_found(job_id) from exc
    except service.NotWaiting as exc:
        raise Problem("job-not-waiting", str(exc), extensions={"state": exc.state}) from exc
    return json_response(service.job_view(job))


def _set_hold(session: Session, principal: Principal, job_id: str, *, held: bool) -> Response:
    try:
        job = retention.set_hold(session, job_id=job_id, tenant_id=principal.tenant_id, held=held)
    except LookupError as exc:
        raise _not_found(job_id) from exc
    return json_response(service.job_view(job))


@router.post(
    "/{job_id}/hold",
    response_model=JobView,
    responses={**_AUTH, **_FORBIDDEN, **_NOT_FOUND},
    summary="Put a job under legal hold",
)
def hold(job_id: str, session: SessionDep, principal: Holder) -> Response:
    """Retention deletes nothing of a held job (outputs, input, work files, row) until the hold is lifted."""
    return _set_hold(session, principal, job_id, held=True)


@router.delete(
    "/{job_id}/hold",
    response_model=JobView,
    responses={**_AUTH, **_FORBIDDEN, **_NOT_FOUND},
    summary="Lift a job's legal hold",
)
def release_hold(job_id: str, session: SessionDep, principal: Holder) -> Response:
    """Retention applies again; files already due are deleted by the next sweep."""
    return _set_hold(session, principal, job_id, held=False)


def _end_payload(job: Job, reason: str) -> dict[str, Any]:
    # Same fields as state_machine.announce publishes.
    return {
        "state": job.state,
        "reason": reason,
        "attempt": job.attempt,
        "failure_class": job.failure_class,
        "error": job.error,
    }


def final_state(session: Session, job: Job) -> dict[str, Any] | None:
    """The final-state payload if `job` has ended, else None."""
    if JobState(job.state) not in TERMINAL:
        return None
    history = service.history_of(session, job.id)
    return _end_payload(job, history[-1].reason if history else "")


def ended(database_url: str, job_id: str) -> dict[str, Any] | None:
    """The final-state payload if the job has ended, else None (for the event hub's idle checks)."""
    with session_scope(database_url) as session:
        job = session.get(Job, job_id)
        return None if job is None else final_state(session, job)


def _follow_start(
    session: Session, caller: Principal, tenant: str | None, job_id: str
) -> tuple[str, dict[str, Any] | None]:
    principal = as_tenant(session, caller, tenant)
    try:
        job = service.get_job(session, principal=principal, job_id=job_id)
    except service.JobNotFound as exc:
        raise _not_found(job_id) from exc
    return job.id, final_state(session, job)


@router.get(
    "/{job_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "state, progress, output, metrics, done"},
        **STREAM_LIMIT_RESPONSES,
        **_AUTH,
        **_FORBIDDEN,
        **_NOT_FOUND,
        **_INVALID,
    },
    summary="Follow a job (Server-Sent Events)",
)
async def job_events(
    job_id: str,
    request: Request,
    session: SessionDep,
    caller: Reader,
    settings: SettingsDep,
    tenant: TenantQuery = None,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=64)] = None,
    last_event_id_query: Annotated[
        str | None,
        Query(alias="last_event_id", max_length=64, description="for clients that cannot set headers"),
    ] = None,
) -> StreamingResponse:
    """The job's events as SSE, resumable with Last-Event-ID; ends after `done`. Operators and admins
    follow another tenant's job read-only with `?tenant=`, as they read it.

    What the stream needs from the database is read here, in one thread hop; the session is closed before
    the stream opens, which then waits on the process's event hub, holding no thread or connection.
    """
    after = last_event_id or last_event_id_query or None
    if after is not None and not is_valid_id(after):
        raise validation_problem(
            "Last-Event-ID", "must be an event id this stream sent (like 1700000000000-0)"
        )
    found_id, final = await in_thread(session, _follow_start, caller, tenant, job_id)
    limits: StreamLimits = request.app.state.stream_limits
    # Streams count against the caller's own tenant: an operator following others' jobs uses its own share.
    limits.acquire(caller.tenant_id)
    hub: EventHub = request.app.state.event_hub
    if final is not None:
        stream = ended_stream(
            hub=hub,
            job_id=found_id,
            after=after,
            ended=final,
            grace_seconds=done_grace(settings.sse_keepalive_seconds),
        )
    else:
        stream = live_stream(
            hub=hub, job_id=found_id, after=after, keepalive_seconds=settings.sse_keepalive_seconds
        )
    return EventStreamResponse(stream, on_close=lambda: limits.release(caller.tenant_id))

"""Workflow routes: a named DAG of steps submitted as one unit (framefleet/workflows/runs.py).

Submitting, reading and canceling a run need the permissions of doing the same to its jobs.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Request
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.responses import Response, StreamingResponse

from framefleet.api import metrics
from framefleet.api.deps import RedisDep, SessionDep, SettingsDep, in_thread
from framefleet.api.errors import Problem, validation_problem
from framefleet.api.hub import EventHub, format_event, format_id, parse_id
from framefleet.api.limits import StreamLimits
from framefleet.api.responses import json_response
from framefleet.api.routes.batch import _apply_quotas
from framefleet.api.routes.jobs import (
    _AUTH,
    _FORBIDDEN,
    _INVALID,
    Canceler,
    Reader,
    Submitter,
    checked_row,
    final_state,
)
from framefleet.api.schemas import ProblemView
from framefleet.api.sse import (
    KEEPALIVE,
    STREAM_LIMIT_RESPONSES,
    EventStreamResponse,
    done_grace,
    ended_stream,
    live_stream,
)
from framefleet.config import Settings
from framefleet.core.spec import JobSpec
from framefleet.core.states import TERMINAL, JobState
from framefleet.db.models import Job
from framefleet.events import is_valid_id
from framefleet.jobs import service
from framefleet.jobs.intake import Intake
from framefleet.keys import Principal
from framefleet.scheduling.registry import WorkerCache
from framefleet.workflows import batch, dag, dependencies, runs

router = APIRouter(prefix="/v1/workflows", tags=["workflows"])

_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ProblemView, "description": "No such workflow for this tenant"}
}
# A resumed stream's id holds one cursor per step: "<stream id>" (last event sent), "0" (none yet) or
# "d" (its `step.done` was sent).
_DONE = "d"
_NONE = "0"


class Step(BaseModel):
    model_config = {"extra": "forbid"}
    name: str = Field(pattern=dag.STEP_NAME, description="unique in the workflow; other steps refer to it")
    spec: dict[str, Any] = Field(
        description="a JobSpec whose depends_on and input.from may name other steps of this workflow"
    )


class WorkflowBody(BaseModel):
    model_config = {"extra": "forbid"}
    name: str = Field(pattern=dag.STEP_NAME, description="a name for people; runs are told apart by id")
    steps: list[Step] = Field(min_length=1, max_length=dag.MAX_STEPS)


def _prefixed(problem: Problem, prefix: str) -> Problem:
    """A step's refusal, its fields named from the request's root (`steps.1.spec.outputs.0.container`)."""
    errors = batch.prefixed(
        problem.errors or [{"field": "", "message": problem.detail, "type": problem.slug}], prefix
    )
    first = errors[0]
    return Problem(
        problem.slug,
        f"{first['field']}: {first['message']}",
        status=problem.status,
        errors=errors,
        headers=problem.headers,
        extensions=problem.extensions,
    )


def _prepare(
    session: Session, principal: Principal, settings: Settings, body: WorkflowBody, workers: Any
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The run's row and its jobs' rows, every step checked; Problem naming the first field at fault."""
    try:
        planned = runs.plan(steps=[(step.name, step.spec) for step in body.steps])
    except dag.StepError as exc:
        raise validation_problem(exc.field, str(exc)) from None
    run = runs.new_row(principal=principal, name=body.name, steps=[step.name for step in body.steps])
    siblings = {step.job_id for step in planned}
    resolver = batch.Resolver(session, principal.tenant_id)
    resolver.prefetch([step.spec for step in planned])
    rows: list[dict[str, Any]] = []
    for index, step in enumerate(planned):
        prefix = f"steps.{index}.spec"
        try:
            try:
                spec, document = resolver.resolve(step.spec)
            except batch.SubmissionInvalid as exc:
                raise Problem("validation", str(exc), errors=exc.errors) from None
            row = checked_row(
                spec=spec,
                document=document,
                principal=principal,
                settings=settings,
                workers=workers,
                idempotency_key=None,
                template=resolver.origin(step.spec),
            )
            _check_outside_parents(session, principal, spec, siblings)
        except Problem as problem:
            raise _prefixed(problem, prefix) from None
        runs.attach(row, run=run, step=step)
        rows.append(row)
    answers: list[Any] = [None] * len(rows)
    admitted: list[dict[str, Any] | None] = list(rows)
    _apply_quotas(session, principal, admitted, answers)
    refused = next((answer for answer in answers if isinstance(answer, Problem)), None)
    if refused is not None:
        raise refused
    session.rollback()  # nothing is held while the intake writes
    return run, rows


def _check_outside_parents(session: Session, principal: Principal, spec: JobSpec, siblings: set[str]) -> None:
    try:
        dependencies.check_parents(session, tenant_id=principal.tenant_id, spec=spec, siblings=siblings)
    except dependencies.UnknownParent as exc:
        raise validation_problem(exc.field, str(exc)) from exc


@router.post(
    "",
    status_code=201,
    responses={
        **_AUTH,
        **_FORBIDDEN,
        **_INVALID,
        429: {"model": ProblemView, "description": "A quota is full"},
    },
    summary="Submit a workflow (a DAG of steps)",
)
async def submit_workflow(
    body: WorkflowBody, session: SessionDep, principal: Submitter, request: Request, settings: SettingsDep
) -> Response:
    """Every step is checked as a job would be; the run and all its jobs are then written in one
    transaction. Steps refer to each other by name in `depends_on` and `input.from`; an unknown name or a
    cycle is a 422 naming the step's field. Steps without parents are queued at once, the others wait in
    `pending` for theirs."""
    workers = None
    if settings.admission_check:
        cache: WorkerCache = request.app.state.worker_cache
        workers = cache.fresh()
        if workers is None:
            workers = await in_thread(session, cache.get, settings)
    run, rows = await in_thread(session, _prepare, principal, settings, body, workers)
    intake: Intake = request.app.state.intake
    outcomes = await asyncio.to_thread(intake.write_group, rows, prelude=lambda db: runs.insert(db, run))
    jobs: list[Job] = []
    for outcome in outcomes:
        if isinstance(outcome, Exception):
            raise outcome  # the database refused the transaction (an outage): nothing was written
        jobs.append(outcome)
    for job in jobs:
        metrics.JOBS_SUBMITTED.labels(job.priority).inc()
    created = await in_thread(session, _read_run, principal, run["id"])
    return json_response(created, 201, {"Location": f"/v1/workflows/{run['id']}"})


def _read_run(session: Session, principal: Principal, workflow_id: str) -> dict[str, Any]:
    try:
        run = runs.get_run(session, principal=principal, workflow_id=workflow_id)
    except runs.WorkflowNotFound as exc:
        raise Problem("not-found", f"no workflow {workflow_id}") from exc
    return runs.run_view(run, runs.jobs_of(session, [run.id])[run.id])


@router.get("", responses={**_AUTH, **_FORBIDDEN, **_INVALID}, summary="List workflows")
def list_workflows(
    session: SessionDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=runs.MAX_PAGE)] = 50,
    cursor: Annotated[str | None, Query(max_length=200)] = None,
) -> Response:
    """The tenant's runs, newest first, each with its status and steps; `next_cursor` pages on."""
    try:
        found, next_cursor = runs.list_runs(session, principal=principal, limit=limit, cursor=cursor)
    except service.BadCursor as exc:
        raise validation_problem("cursor", str(exc)) from exc
    steps = runs.jobs_of(session, [run.id for run in found])
    return json_response(
        {"items": [runs.run_view(run, steps[run.id]) for run in found], "next_cursor": next_cursor}
    )


@router.get("/{workflow_id}", responses={**_AUTH, **_FORBIDDEN, **_NOT_FOUND}, summary="Get a workflow")
def get_workflow(workflow_id: str, session: SessionDep, principal: Reader) -> Response:
    """The run's status (derived from its jobs: queued, running, succeeded, failed, canceled) and steps."""
    return json_response(_read_run(session, principal, workflow_id))


@router.post(
    "/{workflow_id}/cancel",
    responses={
        202: {"description": "Some steps were running: their workers were told to stop"},
        409: {"model": ProblemView, "description": "Every step already ended"},
        **_AUTH,
        **_FORBIDDEN,
        **_NOT_FOUND,
    },
    summary="Cancel a workflow",
)
def cancel_workflow(
    workflow_id: str, session: SessionDep, principal: Canceler, redis: RedisDep, settings: SettingsDep
) -> Response:
    """Cancel every step that has not ended: 200 when all are canceled now, 202 while running steps stop."""
    try:
        run, steps = runs.cancel_run(
            session,
            redis,
            principal=principal,
            workflow_id=workflow_id,
            events_ttl_seconds=settings.events_ttl_seconds,
        )
    except runs.WorkflowNotFound as exc:
        raise Problem("not-found", f"no workflow {workflow_id}") from exc
    except runs.WorkflowFinished as exc:
        raise Problem("job-finished", str(exc), extensions={"workflow_status": exc.status}) from exc
    stopping = any(JobState(job.state) not in TERMINAL for job in steps)
    return json_response(runs.run_view(run, steps), 202 if stopping else 200)


# ------------------------------------------------------------------ the event stream


def parse_cursors(value: str, count: int) -> list[str]:
    """A resumed stream's per-step cursors; ValueError for an id this stream did not send."""
    parts = value.split(".")
    if len(parts) != count or not all(p in (_DONE, _NONE) or is_valid_id(p) for p in parts):
        raise ValueError("not an event id of this workflow's stream")
    return parts


def _parse(text: str) -> tuple[str | None, str, dict[str, Any]]:
    """An SSE message of a job's stream as (id, event, data)."""
    fields: dict[str, str] = {}
    for line in text.strip("\n").split("\n"):
        key, _, value = line.partition(": ")
        fields[key] = value
    return fields.get("id"), fields["event"], json.loads(fields.get("data") or "{}")


async def merged_stream(
    *,
    hub: EventHub,
    steps: Sequence[tuple[str, str, dict[str, Any] | None, str]],
    cursors: list[str],
    keepalive_seconds: float,
) -> AsyncIterator[str]:
    """One SSE stream of a run, made of its jobs' streams (each served as a lone job's, from its cursor).

    `steps` is (name, job id, final state payload if it had ended, state) per step. Each job event goes
    out with the same type and `step`/`job_id` added; a job's `done` becomes `step.done`; once every step
    is done a `done` carries the run's status. The id is every step's cursor, so a client resumes with it.
    A step's stream that stops short (a client too slow for the hub) ends this stream too: resume.
    """
    queue: asyncio.Queue[tuple[int, str | None]] = asyncio.Queue()
    states = {name: state for name, _, _, state in steps}

    async def pump(index: int, job_id: str, final: dict[str, Any] | None) -> None:
        after = None if cursors[index] == _NONE else cursors[index]
        try:
            if final is not None:
                source = ended_stream(
                    hub=hub,
                    job_id=job_id,
                    after=after,
                    ended=final,
                    grace_seconds=done_grace(keepalive_seconds),
                )
            else:
                source = live_stream(hub=hub, job_id=job_id, after=after, keepalive_seconds=keepalive_seconds)
            async for text in source:
                if text != KEEPALIVE:
                    await queue.put((index, text))
        finally:
            await queue.put((index, None))

    tasks = [
        asyncio.create_task(pump(index, job_id, final))
        for index, (_, job_id, final, _) in enumerate(steps)
        if cursors[index] != _DONE
    ]
    running = len(tasks)
    try:
        while running:
            try:
                async with asyncio.timeout(keepalive_seconds):
                    index, text = await queue.get()
            except TimeoutError:
                yield KEEPALIVE
                continue
            if text is None:
                running -= 1
                if cursors[index] != _DONE:
                    return  # cut off: the client resumes from the last id it got
                continue
            event_id, event, data = _parse(text)
            name, job_id = steps[index][0], steps[index][1]
            if event == "done":
                cursors[index] = _DONE
                states[name] = data.get("state", states[name])
                event = "step.done"
            elif event_id is not None:
                cursors[index] = format_id(parse_id(event_id))
            yield format_event(event, {"step": name, "job_id": job_id, **data}, ".".join(cursors))
        yield format_event("done", {"status": dag.status(states.values()), "steps": states})
    finally:
        for task in tasks:
            task.cancel()


def _stream_start(
    session: Session, principal: Principal, workflow_id: str
) -> list[tuple[str, str, dict[str, Any] | None, str]]:
    try:
        run = runs.get_run(session, principal=principal, workflow_id=workflow_id)
    except runs.WorkflowNotFound as exc:
        raise Problem("not-found", f"no workflow {workflow_id}") from exc
    by_step = {job.workflow_step: job for job in runs.jobs_of(session, [run.id])[run.id]}
    return [
        (name, by_step[name].id, final_state(session, by_step[name]), by_step[name].state)
        for name in run.steps
        if name in by_step
    ]


@router.get(
    "/{workflow_id}/events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "each step's events, then done"},
        **STREAM_LIMIT_RESPONSES,
        **_AUTH,
        **_FORBIDDEN,
        **_NOT_FOUND,
        **_INVALID,
    },
    summary="Follow a workflow (Server-Sent Events)",
)
async def workflow_events(
    workflow_id: str,
    request: Request,
    session: SessionDep,
    principal: Reader,
    settings: SettingsDep,
    last_event_id: Annotated[str | None, Header(alias="Last-Event-ID", max_length=4096)] = None,
    last_event_id_query: Annotated[
        str | None,
        Query(alias="last_event_id", max_length=4096, description="for clients that cannot set headers"),
    ] = None,
) -> StreamingResponse:
    """Every step's events (state, progress, output, metrics, `step.done`) with `step` and `job_id`, then
    `done` with the run's status; resumable with Last-Event-ID. Counts as one open stream."""
    steps = await in_thread(session, _stream_start, principal, workflow_id)
    after = last_event_id or last_event_id_query or None
    try:
        cursors = parse_cursors(after, len(steps)) if after else [_NONE] * len(steps)
    except ValueError as exc:
        raise validation_problem("Last-Event-ID", str(exc)) from None
    limits: StreamLimits = request.app.state.stream_limits
    limits.acquire(principal.tenant_id)
    stream = merged_stream(
        hub=request.app.state.event_hub,
        steps=steps,
        cursors=cursors,
        keepalive_seconds=settings.sse_keepalive_seconds,
    )
    return EventStreamResponse(stream, on_close=lambda: limits.release(principal.tenant_id))

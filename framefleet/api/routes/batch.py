"""Batch submission: `POST /v1/jobs/batch`, up to 1,000 specs or template calls in one request.

Every item is resolved and checked before anything is written; the new jobs are then inserted in one
transaction and published in one broker round trip (the intake's group path, framefleet/jobs/intake.py).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, Request
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session
from starlette.responses import Response

from framefleet.api import metrics
from framefleet.api.deps import SessionDep, SettingsDep, in_thread
from framefleet.api.errors import Problem, problem_type
from framefleet.api.responses import json_response
from framefleet.api.routes.jobs import (
    _AUTH,
    _FORBIDDEN,
    _INVALID,
    Submitter,
    check_parents,
    checked_row,
    quota_problem,
    submission_problem,
)
from framefleet.api.schemas import ProblemView
from framefleet.config import Settings
from framefleet.db.models import Job, utcnow
from framefleet.jobs import service
from framefleet.jobs.intake import Intake
from framefleet.keys import Principal
from framefleet.scheduling.registry import WorkerCache
from framefleet.tenancy import quotas
from framefleet.workflows import batch

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class BatchBody(BaseModel):
    model_config = {"extra": "forbid"}
    atomic: bool = Field(default=False, description="all items are created, or none (one 422 naming each)")
    items: list[dict[str, Any]] = Field(
        min_length=1,
        max_length=batch.MAX_ITEMS,
        description="each a JobSpec or a TemplateCall, optionally with its own `idempotency_key`",
    )


def _problem_view(problem: Problem) -> dict[str, Any]:
    view: dict[str, Any] = {
        "type": problem_type(problem.slug),
        "title": problem.title,
        "status": problem.status,
        "detail": problem.detail,
    }
    if problem.errors is not None:
        view["errors"] = problem.errors
    view.update({k: v for k, v in problem.extensions.items() if k not in view})
    return view


def _brief(job: Job) -> dict[str, Any]:
    """What a batch answers per job: enough to follow it (the client has the spec; GET gives the rest)."""
    return {
        "id": job.id,
        "state": job.state,
        "priority": job.priority,
        "pool": job.pool,
        "created_at": job.created_at,
        "location": f"/v1/jobs/{job.id}",
    }


def _key_of(item: dict[str, Any], index: int, batch_key: str | None) -> str | None:
    key = item.pop("idempotency_key", None)
    if key is None:
        return f"{batch_key}:{index}" if batch_key is not None else None
    if not isinstance(key, str) or not 1 <= len(key) <= 255:
        raise Problem(
            "validation",
            "idempotency_key: a string of 1 to 255 characters",
            errors=[{"field": "idempotency_key", "message": "a string of 1 to 255 characters"}],
        )
    return key


def _prepare(
    session: Session,
    principal: Principal,
    settings: Settings,
    body: BatchBody,
    workers: Any,
    batch_key: str | None,
) -> tuple[list[dict[str, Any] | None], list[Any]]:
    """Each item's new row (None once it has an answer) and each item's answer so far: a replayed Job,
    a Problem, or None (to be written)."""
    resolver = batch.Resolver(session, principal.tenant_id)
    items = [dict(item) for item in body.items]
    resolver.prefetch(items)
    rows: list[dict[str, Any] | None] = []
    answers: list[Any] = []
    for index, item in enumerate(items):
        try:
            key = _key_of(item, index, batch_key)
            try:
                spec, document = resolver.resolve(item)
            except batch.SubmissionInvalid as exc:
                raise submission_problem(exc) from None
            row = checked_row(
                spec=spec,
                document=document,
                principal=principal,
                settings=settings,
                workers=workers,
                idempotency_key=key,
                template=resolver.origin(item),
            )
            if spec.depends_on:
                check_parents(session, principal, spec)
            if key is not None:
                replay = service.find_replay(
                    session, principal=principal, idempotency_key=key, digest=row["spec_hash"]
                )
                if replay is not None:
                    rows.append(None)
                    answers.append(replay)
                    continue
        except service.IdempotencyConflict as exc:
            rows.append(None)
            answers.append(Problem("idempotency-conflict", str(exc)))
            continue
        except Problem as problem:
            rows.append(None)
            answers.append(problem)
            continue
        rows.append(row)
        answers.append(None)
    _apply_quotas(session, principal, rows, answers)
    return rows, answers


def _apply_quotas(
    session: Session, principal: Principal, rows: list[dict[str, Any] | None], answers: list[Any]
) -> None:
    """Refuse what the tenant's quotas have no room for: every new item when a quota is spent, the items
    beyond the room left under max_queued_jobs otherwise (later items first)."""
    if principal.quotas == quotas.Quotas():
        return
    over = quotas.submission_over(
        session, tenant_id=principal.tenant_id, quotas=principal.quotas, now=utcnow()
    )
    room: int | None = None
    limit = principal.quotas.max_queued_jobs
    if limit is not None:
        room = limit - quotas.count_upto(session, principal.tenant_id, quotas.WAITING, limit + 1)
    for index, row in enumerate(rows):
        if row is None:
            continue
        if over is None and (room is None or room > 0):
            room = None if room is None else room - 1
            continue
        spent = over or quotas.Over("max_queued_jobs", limit or 0, limit or 0)
        rows[index] = None
        answers[index] = quota_problem(principal, spent)


def _write(
    session: Session,
    principal: Principal,
    intake: Intake,
    rows: list[dict[str, Any] | None],
    answers: list[Any],
    atomic: bool,
) -> list[Any]:
    """Write the new rows as one group; each item's final answer (a new job is a (Job, True) pair)."""
    session.rollback()  # nothing is held while the group is written
    fresh = [row for row in rows if row is not None]
    outcomes = intake.write_group(fresh, atomic=atomic) if fresh else []
    final = list(answers)
    written = iter(outcomes)
    for index, row in enumerate(rows):
        if row is None:
            continue
        outcome = next(written)
        if isinstance(outcome, IntegrityError) and row["idempotency_key"] is not None and not atomic:
            # Another request with the same key won the insert: answer as its replay.
            session.rollback()
            try:
                replay = service.find_replay(
                    session,
                    principal=principal,
                    idempotency_key=row["idempotency_key"],
                    digest=row["spec_hash"],
                )
            except service.IdempotencyConflict as exc:
                final[index] = Problem("idempotency-conflict", str(exc))
                continue
            final[index] = (
                replay if replay is not None else Problem("conflict", "the job could not be recorded")
            )
        elif isinstance(outcome, Exception):
            final[index] = outcome
        else:
            final[index] = (outcome, True)
    return final


@router.post(
    "/batch",
    responses={
        201: {"description": "atomic: every item created (or replayed); `items` in order"},
        409: {"model": ProblemView, "description": "atomic: an item's idempotency key was taken meanwhile"},
        **_AUTH,
        **_FORBIDDEN,
        **_INVALID,
        429: {"model": ProblemView, "description": "atomic: a quota has no room for the batch"},
    },
    summary="Submit up to 1,000 jobs",
)
async def submit_batch(
    body: BatchBody,
    session: SessionDep,
    principal: Submitter,
    request: Request,
    settings: SettingsDep,
    idempotency_key: Annotated[
        str | None, Header(alias="Idempotency-Key", min_length=1, max_length=200)
    ] = None,
) -> Response:
    """Every item is checked first. `atomic`: all are created (201) or none (422 naming each item's
    fields as `items.N.<field>`, or the one 409/429 that stopped it). Otherwise 200 with one result per
    item in order: `status` 201 (`job`), 200 (replayed by its idempotency key, `job`) or 4xx (`problem`).
    An item's `idempotency_key` works as Idempotency-Key does for one job; an Idempotency-Key header gives
    each item without one the key `<header>:<index>`, so a retried batch replays instead of duplicating.
    """
    workers = None
    if settings.admission_check:
        cache: WorkerCache = request.app.state.worker_cache
        workers = cache.fresh()
        if workers is None:
            workers = await in_thread(session, cache.get, settings)
    rows, answers = await in_thread(session, _prepare, principal, settings, body, workers, idempotency_key)
    if body.atomic:
        _refuse_atomic(answers)
    intake: Intake = request.app.state.intake
    final = await in_thread(session, _write, principal, intake, rows, answers, body.atomic)
    items: list[dict[str, Any]] = []
    created = 0
    for index, answer in enumerate(final):
        if isinstance(answer, tuple):
            job: Job = answer[0]
            created += 1
            metrics.JOBS_SUBMITTED.labels(job.priority).inc()
            items.append({"index": index, "status": 201, "job": _brief(job)})
        elif isinstance(answer, Job):
            items.append({"index": index, "status": 200, "job": _brief(answer)})
        elif isinstance(answer, Problem):
            items.append({"index": index, "status": answer.status, "problem": _problem_view(answer)})
        elif body.atomic and isinstance(answer, IntegrityError):
            raise Problem("conflict", "an item's idempotency key was taken meanwhile; send the batch again")
        else:
            # The database refused the group (an outage): the client may send the batch again.
            raise answer
    return json_response(
        {"atomic": body.atomic, "created": created, "items": items}, 201 if body.atomic else 200
    )


def _refuse_atomic(answers: list[Any]) -> None:
    problems = [(index, a) for index, a in enumerate(answers) if isinstance(a, Problem)]
    if not problems:
        return
    quota = next((p for _, p in problems if p.slug == "quota-exceeded"), None)
    if quota is not None:
        raise quota
    errors: list[dict[str, Any]] = []
    for index, problem in problems:
        found = problem.errors or [{"field": "", "message": problem.detail, "type": problem.slug}]
        errors += batch.prefixed(found, f"items.{index}")
    first = errors[0]
    raise Problem(
        "validation",
        f"{len(problems)} of {len(answers)} items are refused; nothing was created "
        f"(first: {first['field']}: {first['message']})",
        errors=errors,
        extensions={"items": [index for index, _ in problems]},
    )

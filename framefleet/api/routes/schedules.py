"""Schedule routes: parse, authorize, call framefleet.workflows.schedules, answer. Every route acts on the
key's own tenant; another tenant's schedule is answered 404, like one that does not exist."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from sqlalchemy.orm import Session
from starlette.responses import Response

from framefleet.api.deps import SessionDep, SettingsDep, requires
from framefleet.api.errors import Problem, validation_problem
from framefleet.api.responses import json_response
from framefleet.api.schemas import ProblemView
from framefleet.config import Settings
from framefleet.core.spec import JobSpec
from framefleet.keys import Principal
from framefleet.workflows import batch
from framefleet.workflows import schedules as service

router = APIRouter(prefix="/v1", tags=["schedules"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ProblemView, "description": "Missing or unknown API key"},
    403: {"model": ProblemView, "description": "The key's role lacks the permission"},
    404: {"model": ProblemView, "description": "No such schedule in this tenant"},
    422: {"model": ProblemView, "description": "Invalid request; `errors` names each field"},
}

Reader = Annotated[Principal, requires("schedules:read")]
Manager = Annotated[Principal, requires("schedules:manage")]
CatchUp = Literal["once", "skip"]


class TemplateRun(BaseModel):
    """A job made from one of the tenant's templates at each fire."""

    model_config = {"extra": "forbid"}
    name: str = Field(min_length=1, max_length=64, description="the template's name")
    version: int | None = Field(default=None, ge=1, description="default: the latest one at each fire")
    params: dict[str, Any] = Field(default_factory=dict, description="a value for each parameter")


class ScheduleCreate(BaseModel):
    model_config = {"extra": "forbid"}
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$", description="unique in the tenant")
    cron: str = Field(min_length=9, max_length=128, description="minute hour day month weekday")
    timezone: str = Field(default="UTC", min_length=1, max_length=64, description="IANA name")
    spec: JobSpec | None = Field(default=None, description="the job submitted at each fire")
    template: TemplateRun | None = Field(default=None, description="or: a template and its params")
    enabled: bool = True
    catch_up: CatchUp = Field(default="once", description="a fire missed in an outage: run once, or skip")


class ScheduleUpdate(BaseModel):
    model_config = {"extra": "forbid"}
    cron: str | None = Field(default=None, min_length=9, max_length=128)
    timezone: str | None = Field(default=None, min_length=1, max_length=64)
    spec: JobSpec | None = None
    template: TemplateRun | None = None
    enabled: bool | None = None
    catch_up: CatchUp | None = None


def _spec_document(spec: JobSpec, settings: Settings, principal: Principal) -> dict[str, Any]:
    try:
        return service.spec_document(spec, settings=settings, tenant=principal.tenant)
    except service.Invalid as exc:
        raise validation_problem(exc.field, str(exc)) from exc


def _what_to_submit(
    session: Session, body: ScheduleCreate | ScheduleUpdate, settings: Settings, principal: Principal
) -> dict[str, Any] | None:
    """What the schedule stores to submit at each fire: a spec document, or a template call checked now
    (its parameters bound, the resolved spec valid); None when the body changes neither."""
    if body.spec is not None and body.template is not None:
        raise validation_problem("template", "give either spec or template, not both")
    if body.spec is not None:
        return _spec_document(body.spec, settings, principal)
    if body.template is None:
        return None
    try:
        return service.template_call(
            session,
            tenant_id=principal.tenant_id,
            tenant=principal.tenant,
            name=body.template.name,
            version=body.template.version,
            params=body.template.params,
            settings=settings,
        )
    except batch.SubmissionInvalid as exc:
        first = exc.errors[0]
        raise Problem("validation", f"{first['field']}: {first['message']}", errors=exc.errors) from None
    except service.Invalid as exc:
        raise validation_problem(exc.field, str(exc)) from exc


def _not_found(exc: service.NotFound) -> Problem:
    return Problem("not-found", str(exc))


@router.get("/schedules", responses=_ERRORS, summary="List schedules")
def list_schedules(session: SessionDep, principal: Reader) -> Response:
    """The tenant's schedules with their next fire times."""
    rows = service.list_schedules(session, tenant_id=principal.tenant_id)
    return json_response({"items": [service.schedule_view(s) for s in rows]})


@router.post("/schedules", status_code=201, responses=_ERRORS, summary="Create a schedule")
def create_schedule(
    body: ScheduleCreate, session: SessionDep, settings: SettingsDep, principal: Manager
) -> Response:
    """A new schedule; its first fire is the first cron time after now. It submits `spec`, or a job from
    `template` with its `params` (checked now; resolved again at each fire)."""
    document = _what_to_submit(session, body, settings, principal)
    if document is None:
        raise validation_problem("spec", "give a spec, or a template with its params")
    try:
        schedule = service.create_schedule(
            session,
            tenant_id=principal.tenant_id,
            name=body.name,
            cron=body.cron,
            timezone=body.timezone,
            spec=document,
            enabled=body.enabled,
            catch_up=body.catch_up,
            actor=principal.actor,
        )
    except service.Invalid as exc:
        raise validation_problem(exc.field, str(exc)) from exc
    return json_response(service.schedule_view(schedule), 201, {"Location": f"/v1/schedules/{schedule.id}"})


@router.get("/schedules/{schedule_id}", responses=_ERRORS, summary="Get a schedule")
def get_schedule(schedule_id: int, session: SessionDep, principal: Reader) -> Response:
    try:
        schedule = service.get_schedule(session, tenant_id=principal.tenant_id, schedule_id=schedule_id)
    except service.NotFound as exc:
        raise _not_found(exc) from exc
    return json_response(service.schedule_view(schedule))


@router.patch("/schedules/{schedule_id}", responses=_ERRORS, summary="Update a schedule")
def update_schedule(
    schedule_id: int, body: ScheduleUpdate, session: SessionDep, settings: SettingsDep, principal: Manager
) -> Response:
    """Change the cron expression, timezone, spec, enabled flag or catch-up; the next fire counts from now."""
    changes = body.model_dump(exclude_unset=True, exclude={"spec", "template"})
    document = _what_to_submit(session, body, settings, principal)
    if document is not None:
        changes["spec"] = document
    for name in ("cron", "timezone", "enabled", "catch_up"):
        if name in changes and changes[name] is None:
            raise validation_problem(name, "may not be null")
    try:
        schedule = service.update_schedule(
            session, tenant_id=principal.tenant_id, schedule_id=schedule_id, changes=changes
        )
    except service.NotFound as exc:
        raise _not_found(exc) from exc
    except service.Invalid as exc:
        raise validation_problem(exc.field, str(exc)) from exc
    return json_response(service.schedule_view(schedule))


@router.delete("/schedules/{schedule_id}", status_code=204, responses=_ERRORS, summary="Delete a schedule")
def delete_schedule(schedule_id: int, session: SessionDep, principal: Manager) -> Response:
    """Remove a schedule and its fire log; the jobs it made stay."""
    try:
        service.delete_schedule(session, tenant_id=principal.tenant_id, schedule_id=schedule_id)
    except service.NotFound as exc:
        raise _not_found(exc) from exc
    return Response(status_code=204)


@router.get("/schedules/{schedule_id}/fires", responses=_ERRORS, summary="A schedule's fires")
def list_fires(
    schedule_id: int,
    session: SessionDep,
    principal: Reader,
    limit: Annotated[int, Query(ge=1, le=100)] = 50,
) -> Response:
    """Fires newest first: the fire time, when it was recorded, and the job made (or why none was)."""
    try:
        rows = service.list_fires(
            session, tenant_id=principal.tenant_id, schedule_id=schedule_id, limit=limit
        )
    except service.NotFound as exc:
        raise _not_found(exc) from exc
    return json_response({"items": [service.fire_view(f) for f in rows]})

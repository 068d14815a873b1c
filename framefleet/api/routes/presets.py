"""Preset and template routes: parse, authorize, call framefleet.workflows, answer. Every route acts on
the key's own tenant; another tenant's preset or template is answered 404, like one that does not exist.
State changes are audited by the audit middleware (presets.*, templates.* actions)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from pydantic import BaseModel, Field
from sqlalchemy.exc import IntegrityError
from starlette.responses import Response

from framefleet.api.deps import SessionDep, requires
from framefleet.api.errors import Problem, validation_problem
from framefleet.api.responses import json_response
from framefleet.api.routes.jobs import submission_problem
from framefleet.api.schemas import ProblemView
from framefleet.keys import Principal
from framefleet.workflows import batch, presets, templates

router = APIRouter(prefix="/v1", tags=["presets"])
templates_router = APIRouter(prefix="/v1", tags=["templates"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ProblemView, "description": "Missing or unknown API key"},
    403: {"model": ProblemView, "description": "The key's role lacks the permission"},
    404: {"model": ProblemView, "description": "No such preset or template in this tenant"},
    409: {"model": ProblemView, "description": "The name is taken (or built in)"},
    422: {"model": ProblemView, "description": "Invalid request; `errors` names each field"},
}
NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"
NameParam = Annotated[str, Path(pattern=NAME_PATTERN, max_length=64)]
Reader = Annotated[Principal, requires("presets:read")]
Manager = Annotated[Principal, requires("presets:manage")]
TemplateReader = Annotated[Principal, requires("templates:read")]
TemplateManager = Annotated[Principal, requires("templates:manage")]


class PresetCreate(BaseModel):
    model_config = {"extra": "forbid"}
    name: str = Field(pattern=NAME_PATTERN, max_length=64)
    description: str | None = Field(default=None, max_length=255)
    output: dict[str, Any] = Field(description="an output's fields, without name or destination")


class PresetUpdate(BaseModel):
    model_config = {"extra": "forbid"}
    description: str | None = Field(default=None, max_length=255)
    output: dict[str, Any] | None = None


class TemplateBody(BaseModel):
    model_config = {"extra": "forbid"}
    description: str | None = Field(default=None, max_length=255)
    parameters: dict[Annotated[str, Field(pattern=templates.PARAM_NAME)], templates.Parameter] = Field(
        default_factory=dict, max_length=64
    )
    spec: dict[str, Any] = Field(description="a job spec; strings may hold {{parameter}} placeholders")


class TemplateCreate(TemplateBody):
    name: str = Field(pattern=NAME_PATTERN, max_length=64)


@router.get("/presets", responses=_ERRORS, summary="List presets")
def list_presets(session: SessionDep, principal: Reader) -> Response:
    """The built-in presets, then the tenant's own."""
    return json_response({"items": presets.list_presets(session, tenant_id=principal.tenant_id)})


@router.get("/presets/{name}", responses=_ERRORS, summary="Get a preset")
def get_preset(name: NameParam, session: SessionDep, principal: Reader) -> Response:
    try:
        return json_response(presets.get_preset(session, tenant_id=principal.tenant_id, name=name))
    except presets.NotFound as exc:
        raise Problem("not-found", str(exc)) from exc


@router.post("/presets", status_code=201, responses=_ERRORS, summary="Create a preset")
def create_preset(body: PresetCreate, session: SessionDep, principal: Manager) -> Response:
    try:
        row = presets.create_preset(
            session,
            tenant_id=principal.tenant_id,
            name=body.name,
            description=body.description,
            output=body.output,
        )
    except presets.PresetError as exc:
        raise validation_problem(exc.field, str(exc)) from exc
    except (presets.Exists, IntegrityError) as exc:
        raise Problem("conflict", f"preset {body.name!r} exists or is built in") from exc
    return json_response(presets.view(row), 201, {"Location": f"/v1/presets/{row.name}"})


@router.patch("/presets/{name}", responses=_ERRORS, summary="Update a preset")
def update_preset(name: NameParam, body: PresetUpdate, session: SessionDep, principal: Manager) -> Response:
    """Jobs submitted earlier keep the settings they were expanded with."""
    try:
        row = presets.update_preset(
            session,
            tenant_id=principal.tenant_id,
            name=name,
            description=body.description,
            output=body.output,
        )
    except presets.PresetError as exc:
        raise validation_problem(exc.field, str(exc)) from exc
    except presets.NotFound as exc:
        raise Problem("not-found", str(exc)) from exc
    except presets.Exists as exc:
        raise Problem("conflict", str(exc)) from exc
    return json_response(presets.view(row))


@router.delete("/presets/{name}", status_code=204, responses=_ERRORS, summary="Delete a preset")
def delete_preset(name: NameParam, session: SessionDep, principal: Manager) -> Response:
    try:
        presets.delete_preset(session, tenant_id=principal.tenant_id, name=name)
    except presets.NotFound as exc:
        raise Problem("not-found", str(exc)) from exc
    except presets.Exists as exc:
        raise Problem("conflict", str(exc)) from exc
    return Response(status_code=204)


def _checked(session: SessionDep, principal: Principal, body: TemplateBody) -> None:
    try:
        batch.check_template(batch.Resolver(session, principal.tenant_id), body.parameters, body.spec)
    except batch.SubmissionInvalid as exc:
        raise submission_problem(exc) from exc


@templates_router.get("/templates", responses=_ERRORS, summary="List templates")
def list_templates(session: SessionDep, principal: TemplateReader) -> Response:
    """The latest version of each of the tenant's templates."""
    rows = templates.list_templates(session, tenant_id=principal.tenant_id)
    return json_response({"items": [templates.view(row) for row in rows]})


@templates_router.post("/templates", status_code=201, responses=_ERRORS, summary="Create a template")
def create_template(body: TemplateCreate, session: SessionDep, principal: TemplateManager) -> Response:
    """Version 1 of a new template; its spec must be valid with any value its parameters may take."""
    _checked(session, principal, body)
    try:
        row = templates.save(
            session,
            tenant_id=principal.tenant_id,
            name=body.name,
            description=body.description,
            parameters=body.parameters,
            spec=body.spec,
            new=True,
        )
    except templates.ParamError as exc:
        raise validation_problem(exc.field, str(exc)) from exc
    except (templates.Exists, IntegrityError) as exc:
        raise Problem("conflict", f"template {body.name!r} exists; PUT adds a version") from exc
    return json_response(templates.view(row), 201, {"Location": f"/v1/templates/{row.name}"})


@templates_router.put(
    "/templates/{name}", status_code=201, responses=_ERRORS, summary="Add a template version"
)
def update_template(
    name: NameParam, body: TemplateBody, session: SessionDep, principal: TemplateManager
) -> Response:
    """The next version; earlier versions stay readable and usable (`"version": n` in a template call)."""
    _checked(session, principal, body)
    try:
        row = templates.save(
            session,
            tenant_id=principal.tenant_id,
            name=name,
            description=body.description,
            parameters=body.parameters,
            spec=body.spec,
            new=False,
        )
    except templates.ParamError as exc:
        raise validation_problem(exc.field, str(exc)) from exc
    except templates.NotFound as exc:
        raise Problem("not-found", str(exc)) from exc
    except IntegrityError as exc:
        raise Problem("conflict", "another version was added meanwhile; send it again") from exc
    return json_response(
        templates.view(row), 201, {"Location": f"/v1/templates/{row.name}/versions/{row.version}"}
    )


@templates_router.get("/templates/{name}", responses=_ERRORS, summary="Get a template")
def get_template(
    name: NameParam,
    session: SessionDep,
    principal: TemplateReader,
    version: Annotated[int | None, Query(ge=1, description="default: the latest")] = None,
) -> Response:
    try:
        row = templates.find(session, tenant_id=principal.tenant_id, name=name, version=version)
    except templates.NotFound as exc:
        raise Problem("not-found", str(exc)) from exc
    return json_response(templates.view(row))


@templates_router.get("/templates/{name}/versions", responses=_ERRORS, summary="A template's versions")
def template_versions(name: NameParam, session: SessionDep, principal: TemplateReader) -> Response:
    try:
        rows = templates.versions(session, tenant_id=principal.tenant_id, name=name)
    except templates.NotFound as exc:
        raise Problem("not-found", str(exc)) from exc
    return json_response({"items": [templates.view(row) for row in rows]})


@templates_router.delete("/templates/{name}", status_code=204, responses=_ERRORS, summary="Delete a template")
def delete_template(name: NameParam, session: SessionDep, principal: TemplateManager) -> Response:
    """Every version (jobs made from it keep their specs)."""
    try:
        templates.delete(session, tenant_id=principal.tenant_id, name=name)
    except templates.NotFound as exc:
        raise Problem("not-found", str(exc)) from exc
    return Response(status_code=204)

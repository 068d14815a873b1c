"""Storage profiles: `/v1/storage` (framefleet/storage/profiles.py, profile_service.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import httpx
from fastapi import APIRouter, Body
from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import Response

from framefleet.api.deps import SessionDep, SettingsDep, requires
from framefleet.api.errors import Problem, validation_problem
from framefleet.api.responses import json_response
from framefleet.api.schemas import ProblemView
from framefleet.config import Settings
from framefleet.keys import Principal
from framefleet.storage import profile_service as service
from framefleet.storage.http import forbidden_reason, system_resolver
from framefleet.tenancy.permissions import allows

router = APIRouter(prefix="/v1/storage", tags=["storage"])

Reader = Annotated[Principal, requires("storage:read")]
Manager = Annotated[Principal, requires("storage:manage")]

_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ProblemView, "description": "Missing or unknown API key"},
    403: {"model": ProblemView, "description": "The key's role lacks the permission"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": ProblemView, "description": "No such profile"}}
_INVALID: dict[int | str, dict[str, Any]] = {
    422: {"model": ProblemView, "description": "`errors` names the field"}
}

Kind = Literal["s3", "azure", "gcs", "file"]


class ProfileChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    bucket: str | None = Field(
        default=None, min_length=1, max_length=1024, description="bucket, container or folder"
    )
    prefix: str | None = Field(default=None, max_length=1024)
    endpoint: str | None = Field(
        default=None, max_length=1024, description="the store's URL (MinIO, Azurite, …)"
    )
    region: str | None = Field(default=None, max_length=64)
    credentials: dict[str, str] | None = Field(default=None, description="stored encrypted, never returned")
    default_output: bool | None = Field(default=None, description="the tenant's default output location")


class ProfileCreate(ProfileChange):
    name: str = Field(min_length=1, max_length=64)
    kind: Kind
    bucket: str = Field(min_length=1, max_length=1024)  # type: ignore[assignment]


def _check_endpoint(settings: Settings, endpoint: str | None) -> None:
    """An endpoint must be an http(s) URL; a private address only where the operator allows it."""
    if endpoint is None:
        return
    try:
        url = httpx.URL(endpoint)
    except httpx.InvalidURL as exc:
        raise validation_problem("endpoint", f"not a URL: {exc}") from exc
    if url.scheme not in ("http", "https") or not url.host:
        raise validation_problem("endpoint", "an http or https URL with a host")
    if settings.profile_endpoint_allow_private:
        return
    try:
        addresses = system_resolver(url.host, url.port or 443)
    except (OSError, UnicodeError) as exc:
        raise validation_problem("endpoint", f"cannot resolve {url.host}: {exc}") from exc
    for address in addresses:
        reason = forbidden_reason(address)
        if reason is not None:
            raise validation_problem(
                "endpoint", f"{url.host} is a {reason}; not allowed for storage profiles"
            )
    if not addresses:
        raise validation_problem("endpoint", f"{url.host} resolves to nothing")


def _check_default(principal: Principal, default_output: bool | None) -> None:
    if default_output is not None and not allows(principal.role, "tenants:manage"):
        raise Problem(
            "forbidden",
            "only an operator (tenants:manage) sets a tenant's default output location",
            extensions={"permission": "tenants:manage"},
        )


@router.get("", responses=_RESPONSES, summary="List storage profiles")
def list_profiles(session: SessionDep, principal: Reader) -> Response:
    """The tenant's storage profiles (never their credentials)."""
    return json_response(
        {"items": [service.view(r) for r in service.rows_of(session, tenant_id=principal.tenant_id)]}
    )


@router.post(
    "",
    status_code=201,
    responses={**_RESPONSES, **_INVALID, 409: {"model": ProblemView}},
    summary="Create a storage profile",
)
def create_profile(
    body: Annotated[ProfileCreate, Body()], session: SessionDep, settings: SettingsDep, principal: Manager
) -> Response:
    """A named location usable as `storage://<name>/<path>` in the tenant's jobs."""
    _check_default(principal, body.default_output)
    _check_endpoint(settings, body.endpoint)
    values = body.model_dump(exclude={"name"}, exclude_none=True)
    try:
        row = service.create(
            session, tenant_id=principal.tenant_id, name=body.name, values=values, settings=settings
        )
    except service.ProfileInvalid as exc:
        raise validation_problem(exc.field, str(exc)) from exc
    except service.ProfileExists as exc:
        raise Problem("conflict", f"a storage profile named {body.name!r} exists") from exc
    return json_response(service.view(row), 201, {"Location": f"/v1/storage/{row.name}"})


@router.get("/{name}", responses={**_RESPONSES, **_NOT_FOUND}, summary="Get a storage profile")
def get_profile(name: str, session: SessionDep, principal: Reader) -> Response:
    try:
        return json_response(service.view(service.get(session, tenant_id=principal.tenant_id, name=name)))
    except service.ProfileNotFound as exc:
        raise Problem("not-found", f"no storage profile {name!r}") from exc


@router.patch(
    "/{name}", responses={**_RESPONSES, **_NOT_FOUND, **_INVALID}, summary="Change a storage profile"
)
def change_profile(
    name: str,
    body: Annotated[ProfileChange, Body()],
    session: SessionDep,
    settings: SettingsDep,
    principal: Manager,
) -> Response:
    """Change some fields; `credentials`, when given, replace the stored ones whole."""
    _check_default(principal, body.default_output)
    _check_endpoint(settings, body.endpoint)
    try:
        row = service.update(
            session,
            tenant_id=principal.tenant_id,
            name=name,
            changes=body.model_dump(exclude_unset=True),
            settings=settings,
        )
    except service.ProfileNotFound as exc:
        raise Problem("not-found", f"no storage profile {name!r}") from exc
    except service.ProfileInvalid as exc:
        raise validation_problem(exc.field, str(exc)) from exc
    return json_response(service.view(row))


@router.delete(
    "/{name}", status_code=204, responses={**_RESPONSES, **_NOT_FOUND}, summary="Delete a storage profile"
)
def delete_profile(name: str, session: SessionDep, principal: Manager) -> Response:
    """Jobs already recorded keep their `storage://` URIs; they fail if they run after this."""
    try:
        service.delete(session, tenant_id=principal.tenant_id, name=name)
    except service.ProfileNotFound as exc:
        raise Problem("not-found", f"no storage profile {name!r}") from exc
    return Response(status_code=204)

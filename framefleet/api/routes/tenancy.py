"""Admin routes for tenants and keys, and the audit log: parse, authorize, call framefleet.tenancy, answer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from pydantic import BaseModel, Field, field_validator
from starlette.responses import Response

from framefleet.api.deps import RedisDep, SessionDep, SettingsDep, requires
from framefleet.api.errors import Problem, validation_problem
from framefleet.api.key_cache import KeyCache
from framefleet.api.middleware import request_id_of
from framefleet.api.responses import json_response
from framefleet.api.schemas import ProblemView
from framefleet.db.models import utcnow
from framefleet.keys import Principal
from framefleet.scheduling.fairshare import weight_of
from framefleet.tenancy import audit, quotas, service, usage
from framefleet.tenancy.audit import Actor
from framefleet.tenancy.permissions import ROLES, allows
from framefleet.tenancy.quotas import quotas_of
from framefleet.tenancy.ratelimit import tenant_limits

router = APIRouter(prefix="/v1", tags=["tenancy"])

Responses = dict[int | str, dict[str, Any]]
_ERRORS: Responses = {
    401: {"model": ProblemView, "description": "Missing or unknown API key"},
    403: {"model": ProblemView, "description": "The key's role lacks the permission"},
    404: {"model": ProblemView, "description": "No such tenant or key"},
    409: {"model": ProblemView, "description": "Conflicts with the current state"},
    422: {"model": ProblemView, "description": "Invalid request; `errors` names each field"},
}

TenantReader = Annotated[Principal, requires("tenants:read")]
TenantManager = Annotated[Principal, requires("tenants:manage")]
KeyManager = Annotated[Principal, requires("keys:manage")]
AuditReader = Annotated[Principal, requires("audit:read")]
UsageReader = Annotated[Principal, requires("usage:read")]


def _checked_settings(value: dict[str, Any]) -> dict[str, Any]:
    # A malformed `rate_limits` or `quotas` is a 422 naming it.
    tenant_limits(value)
    quotas_of(value)
    weight_of(value)
    return value


class TenantCreate(BaseModel):
    model_config = {"extra": "forbid"}
    name: str = Field(min_length=1, max_length=64, description="path-safe: letters, digits, '_', '-', '.'")
    settings: dict[str, Any] = Field(
        default_factory=dict, description="free-form; `rate_limits` as in docs/security.md"
    )
    _check = field_validator("settings")(_checked_settings)


class TenantUpdate(BaseModel):
    model_config = {"extra": "forbid"}
    settings: dict[str, Any] = Field(description="free-form; `rate_limits` as in docs/security.md")
    _check = field_validator("settings")(_checked_settings)


class SuspendBody(BaseModel):
    model_config = {"extra": "forbid"}
    reason: str | None = Field(default=None, max_length=500)


class KeyCreate(BaseModel):
    model_config = {"extra": "forbid"}
    tenant: str = Field(min_length=1, max_length=64)
    role: str = Field(default="member", description=f"one of {', '.join(ROLES)} (`submitter` means member)")
    expires_at: datetime | None = Field(default=None, description="ISO 8601; without an offset, UTC")
    description: str | None = Field(default=None, max_length=255)
    allowed_cidrs: list[str] | None = Field(
        default=None, max_length=100, description="networks the key may be used from, e.g. 10.0.0.0/8"
    )


def actor_of(request: Request, principal: Principal) -> Actor:
    """The audit actor of this request (marked audited: the audit middleware adds no second row)."""
    request.state.audited = True
    client = request.client.host if request.client else None
    return Actor.of(principal, client_ip=client, request_id=request_id_of(request.scope))


def _forget_keys(request: Request) -> None:
    # This process applies a revocation or suspension at once; other processes within the cache TTL.
    cache: KeyCache = request.app.state.key_cache
    cache.clear()


def _aware(value: datetime | None) -> datetime | None:
    return value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value


@router.get("/tenants", responses=_ERRORS, summary="List tenants")
def list_tenants(session: SessionDep, _principal: TenantReader) -> Response:
    """Every tenant with its status and settings."""
    return json_response({"items": [service.tenant_view(t) for t in service.list_tenants(session)]})


@router.post("/tenants", status_code=201, responses=_ERRORS, summary="Create a tenant")
def create_tenant(
    body: TenantCreate, request: Request, session: SessionDep, principal: TenantManager
) -> Response:
    """A new, active tenant."""
    try:
        tenant = service.create_tenant(
            session, name=body.name, settings=body.settings, actor=actor_of(request, principal)
        )
    except service.Conflict as exc:
        raise Problem("conflict", str(exc)) from exc
    except ValueError as exc:
        raise validation_problem("name", str(exc)) from exc
    return json_response(service.tenant_view(tenant), 201, {"Location": f"/v1/tenants/{tenant.name}"})


@router.get("/tenants/{name}", responses=_ERRORS, summary="Get a tenant")
def get_tenant(name: str, session: SessionDep, _principal: TenantReader) -> Response:
    """One tenant."""
    try:
        return json_response(service.tenant_view(service.get_tenant(session, name=name)))
    except service.NotFound as exc:
        raise Problem("not-found", str(exc)) from exc


@router.patch("/tenants/{name}", responses=_ERRORS, summary="Update a tenant's settings")
def update_tenant(
    name: str, body: TenantUpdate, request: Request, session: SessionDep, principal: TenantManager
) -> Response:
    """Replace the tenant's settings."""
    try:
        tenant = service.update_tenant(
            session, name=name, settings=body.settings, actor=actor_of(request, principal)
        )
    except service.NotFound as exc:
        raise Problem("not-found", str(exc)) from exc
    return json_response(service.tenant_view(tenant))


@router.post("/tenants/{name}/suspend", responses=_ERRORS, summary="Suspend a tenant")
def suspend_tenant(
    name: str,
    request: Request,
    session: SessionDep,
    principal: TenantManager,
    body: SuspendBody | None = None,
) -> Response:
    """Its keys get 403 and its queued jobs wait in `pending` until it is reactivated."""
    try:
        tenant = service.suspend_tenant(
            session, name=name, reason=body.reason if body else None, actor=actor_of(request, principal)
        )
    except service.NotFound as exc:
        raise Problem("not-found", str(exc)) from exc
    except service.Conflict as exc:
        raise Problem("conflict", str(exc)) from exc
    _forget_keys(request)
    return json_response(service.tenant_view(tenant))


@router.post("/tenants/{name}/reactivate", responses=_ERRORS, summary="Reactivate a tenant")
def reactivate_tenant(
    name: str,
    request: Request,
    session: SessionDep,
    principal: TenantManager,
    redis_client: RedisDep,
    settings: SettingsDep,
) -> Response:
    """Its keys work again and the jobs held while it was suspended are queued again."""
    try:
        tenant, released = service.reactivate_tenant(
            session,
            redis_client,
            name=name,
            actor=actor_of(request, principal),
            celery=request.app.state.celery,
            events_ttl_seconds=settings.events_ttl_seconds,
        )
    except service.NotFound as exc:
        raise Problem("not-found", str(exc)) from exc
    _forget_keys(request)
    return json_response({**service.tenant_view(tenant), "released_jobs": released})


@router.get("/keys", responses=_ERRORS, summary="List API keys")
def list_keys(
    session: SessionDep,
    _principal: KeyManager,
    tenant: Annotated[str | None, Query(max_length=64)] = None,
    include_revoked: bool = False,
) -> Response:
    """Keys (never their secret), newest first."""
    rows = service.list_keys(session, tenant=tenant, include_revoked=include_revoked)
    return json_response({"items": [service.key_view(key, name) for key, name in rows]})


@router.post("/keys", status_code=201, responses=_ERRORS, summary="Create an API key")
def create_key(body: KeyCreate, request: Request, session: SessionDep, principal: KeyManager) -> Response:
    """A new key; `key` is in this answer only (just its hash is stored)."""
    try:
        raw, key = service.create_key(
            session,
            tenant=body.tenant,
            role=body.role,
            expires_at=_aware(body.expires_at),
            description=body.description,
            allowed_cidrs=body.allowed_cidrs,
            actor=actor_of(request, principal),
        )
    except service.NotFound as exc:
        raise Problem("not-found", str(exc)) from exc
    except ValueError as exc:
        field = "role" if "role" in str(exc) else "expires_at" if "expires" in str(exc) else "allowed_cidrs"
        raise validation_problem(field, str(exc)) from exc
    return json_response({**service.key_view(key, body.tenant), "key": raw}, 201)


@router.get("/keys/{key_id}", responses=_ERRORS, summary="Get an API key")
def get_key(key_id: int, session: SessionDep, _principal: KeyManager) -> Response:
    """One key (never its secret)."""
    try:
        key, tenant = service.get_key(session, key_id=key_id)
    except service.NotFound as exc:
        raise Problem("not-found", str(exc)) from exc
    return json_response(service.key_view(key, tenant))


@router.post("/keys/{key_id}/revoke", responses=_ERRORS, summary="Revoke an API key")
def revoke_key(key_id: int, request: Request, session: SessionDep, principal: KeyManager) -> Response:
    """Refused at once by this API process, by the others within FRAMEFLEET_API_KEY_CACHE_SECONDS."""
    try:
        key = service.revoke_key(session, key_id=key_id, actor=actor_of(request, principal))
        _, tenant = service.get_key(session, key_id=key_id)
    except service.NotFound as exc:
        raise Problem("not-found", str(exc)) from exc
    except service.Conflict as exc:
        raise Problem("conflict", str(exc)) from exc
    _forget_keys(request)
    return json_response(service.key_view(key, tenant))


@router.post("/keys/{key_id}/rotate", status_code=201, responses=_ERRORS, summary="Rotate an API key")
def rotate_key(key_id: int, request: Request, session: SessionDep, principal: KeyManager) -> Response:
    """A new key with the same tenant, role, expiry and networks; the old one is revoked."""
    try:
        raw, key = service.rotate_key(session, key_id=key_id, actor=actor_of(request, principal))
        _, tenant = service.get_key(session, key_id=key.id)
    except service.NotFound as exc:
        raise Problem("not-found", str(exc)) from exc
    except service.Conflict as exc:
        raise Problem("conflict", str(exc)) from exc
    _forget_keys(request)
    return json_response({**service.key_view(key, tenant), "key": raw}, 201)


@router.get("/usage", responses=_ERRORS, summary="The caller's tenant's usage against its quotas")
def own_usage(session: SessionDep, principal: UsageReader) -> Response:
    """Usage against each quota now (`usage`, `limit`: null when unset), and each month's usage."""
    tenant = service.get_tenant(session, name=principal.tenant)
    return json_response(quotas.report(session, tenant=tenant, now=utcnow()))


@router.get("/usage/days", responses=_ERRORS, summary="The caller's tenant's usage and cost per day")
def own_usage_by_day(
    session: SessionDep,
    principal: UsageReader,
    days: Annotated[int, Query(ge=1, le=usage.MAX_DAYS, description="days back from today (UTC)")] = 30,
) -> Response:
    """Per UTC day with ended jobs, newest first: jobs ended and succeeded, CPU and GPU hours, energy and
    cost (the sum of the jobs' own usage records, per currency)."""
    now = utcnow()
    since = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days - 1)
    items = usage.daily(session, tenant_id=principal.tenant_id, since=since)
    return json_response({"since": since, "items": items})


@router.get("/tenants/{name}/usage", responses=_ERRORS, summary="A tenant's usage against its quotas")
def tenant_usage(name: str, session: SessionDep, _principal: TenantReader) -> Response:
    """Usage against each quota now (`usage`, `limit`: null when unset), and each month's usage."""
    try:
        tenant = service.get_tenant(session, name=name)
    except service.NotFound as exc:
        raise Problem("not-found", str(exc)) from exc
    return json_response(quotas.report(session, tenant=tenant, now=utcnow()))


@router.get("/audit", responses=_ERRORS, summary="Audit log")
def list_audit(
    session: SessionDep,
    principal: AuditReader,
    tenant: Annotated[str | None, Query(max_length=64, description="admins: one tenant's rows")] = None,
    action: Annotated[str | None, Query(max_length=64, description="e.g. job.submit, key.revoke")] = None,
    outcome: Annotated[str | None, Query(max_length=16, description="ok | denied | failed")] = None,
    actor: Annotated[str | None, Query(max_length=64, description="key:<id>:<prefix> or cli")] = None,
    since: Annotated[datetime | None, Query(description="ISO 8601; without an offset, UTC")] = None,
    until: Annotated[datetime | None, Query(description="ISO 8601; without an offset, UTC")] = None,
    limit: Annotated[int, Query(ge=1, le=audit.MAX_PAGE)] = 100,
    cursor: Annotated[
        str | None, Query(max_length=512, description="next_cursor of the previous page")
    ] = None,
) -> Response:
    """Audit rows, newest first: admins see every tenant's, every other role its own tenant's."""
    if allows(principal.role, "audit:read:any"):
        tenant_id = None
        if tenant is not None:
            found = service.find_tenant(session, name=tenant)
            if found is None:
                raise Problem("not-found", f"no tenant {tenant!r}")
            tenant_id = found.id
    elif tenant is not None and tenant != principal.tenant:
        raise Problem("forbidden", f"role {principal.role!r} may read only its own tenant's audit log")
    else:
        tenant_id = principal.tenant_id
    filters = audit.AuditFilter(
        tenant_id=tenant_id,
        action=action,
        outcome=outcome,
        actor=actor,
        since=_aware(since),
        until=_aware(until),
    )
    try:
        rows, next_cursor = audit.list_events(session, filters=filters, limit=limit, cursor=cursor)
    except audit.BadCursor as exc:
        raise validation_problem("cursor", str(exc)) from exc
    return json_response({"items": [audit.event_view(row) for row in rows], "next_cursor": next_cursor})

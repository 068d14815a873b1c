"""Webhook routes: parse, authorize, call framefleet.webhooks.service, answer. Every route acts on the
key's own tenant; another tenant's endpoint is answered 404, like one that does not exist."""

from __future__ import annotations

from typing import Annotated, Any, get_args

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field
from starlette.responses import Response

from framefleet.api.deps import SessionDep, SettingsDep, requires
from framefleet.api.errors import Problem, validation_problem
from framefleet.api.responses import json_response
from framefleet.api.schemas import ProblemView
from framefleet.core.spec import WebhookEventType
from framefleet.keys import Principal
from framefleet.webhooks import service
from framefleet.webhooks.feed import DEFAULT_EVENT_TYPES

router = APIRouter(prefix="/v1", tags=["webhooks"])

_ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"model": ProblemView, "description": "Missing or unknown API key"},
    403: {"model": ProblemView, "description": "The key's role lacks the permission"},
    404: {"model": ProblemView, "description": "No such endpoint or delivery in this tenant"},
    422: {"model": ProblemView, "description": "Invalid request; `errors` names each field"},
}

Reader = Annotated[Principal, requires("webhooks:read")]
Manager = Annotated[Principal, requires("webhooks:manage")]
MAX_GRACE_SECONDS = 7 * 24 * 3600


class EndpointCreate(BaseModel):
    model_config = {"extra": "forbid"}
    url: str = Field(min_length=1, max_length=2048, description="http(s) URL the events are POSTed to")
    event_types: list[WebhookEventType] = Field(
        default_factory=lambda: [t for t in get_args(WebhookEventType) if t in DEFAULT_EVENT_TYPES],
        min_length=1,
        description="events sent; default all but the opt-in `job.progress` milestones",
    )
    description: str | None = Field(default=None, max_length=255)
    enabled: bool = True


class EndpointUpdate(BaseModel):
    model_config = {"extra": "forbid"}
    url: str | None = Field(default=None, min_length=1, max_length=2048)
    event_types: list[WebhookEventType] | None = Field(default=None, min_length=1)
    description: str | None = Field(default=None, max_length=255)
    enabled: bool | None = None


class RotateBody(BaseModel):
    model_config = {"extra": "forbid"}
    grace_seconds: float | None = Field(
        default=None, ge=0, le=MAX_GRACE_SECONDS, description="how long the old secret also signs"
    )


def _not_found(exc: service.NotFound) -> Problem:
    return Problem("not-found", str(exc))


@router.get("/webhooks", responses=_ERRORS, summary="List webhook endpoints")
def list_endpoints(session: SessionDep, principal: Reader) -> Response:
    """The tenant's endpoints (never their secrets)."""
    rows = service.list_endpoints(session, tenant_id=principal.tenant_id)
    return json_response({"items": [service.endpoint_view(e) for e in rows]})


@router.post("/webhooks", status_code=201, responses=_ERRORS, summary="Create a webhook endpoint")
def create_endpoint(
    body: EndpointCreate, session: SessionDep, settings: SettingsDep, principal: Manager
) -> Response:
    """A new endpoint; its signing `secret` is in this answer only."""
    try:
        endpoint, secret = service.create_endpoint(
            session,
            tenant_id=principal.tenant_id,
            url=body.url,
            event_types=body.event_types,
            description=body.description,
            enabled=body.enabled,
            secret_key=settings.secret_key,
            allow_private=settings.webhook_allow_private,
        )
    except ValueError as exc:
        raise validation_problem("url" if "endpoints" not in str(exc) else "tenant", str(exc)) from exc
    view = {**service.endpoint_view(endpoint), "secret": secret}
    return json_response(view, 201, {"Location": f"/v1/webhooks/{endpoint.id}"})


@router.get("/webhooks/{webhook_id}", responses=_ERRORS, summary="Get a webhook endpoint")
def get_endpoint(webhook_id: int, session: SessionDep, principal: Reader) -> Response:
    try:
        endpoint = service.get_endpoint(session, tenant_id=principal.tenant_id, endpoint_id=webhook_id)
    except service.NotFound as exc:
        raise _not_found(exc) from exc
    return json_response(service.endpoint_view(endpoint))


@router.patch("/webhooks/{webhook_id}", responses=_ERRORS, summary="Update a webhook endpoint")
def update_endpoint(
    webhook_id: int, body: EndpointUpdate, session: SessionDep, settings: SettingsDep, principal: Manager
) -> Response:
    """Change the URL, event types, description or enabled flag (enabling clears `failing`)."""
    try:
        endpoint = service.update_endpoint(
            session,
            tenant_id=principal.tenant_id,
            endpoint_id=webhook_id,
            changes=body.model_dump(exclude_unset=True),
            allow_private=settings.webhook_allow_private,
        )
    except service.NotFound as exc:
        raise _not_found(exc) from exc
    except ValueError as exc:
        raise validation_problem("url", str(exc)) from exc
    return json_response(service.endpoint_view(endpoint))


@router.delete(
    "/webhooks/{webhook_id}", status_code=204, responses=_ERRORS, summary="Delete a webhook endpoint"
)
def delete_endpoint(webhook_id: int, session: SessionDep, principal: Manager) -> Response:
    try:
        service.delete_endpoint(session, tenant_id=principal.tenant_id, endpoint_id=webhook_id)
    except service.NotFound as exc:
        raise _not_found(exc) from exc
    return Response(status_code=204)


@router.post(
    "/webhooks/{webhook_id}/rotate-secret", responses=_ERRORS, summary="Rotate a webhook endpoint's secret"
)
def rotate_secret(
    webhook_id: int,
    session: SessionDep,
    settings: SettingsDep,
    principal: Manager,
    body: RotateBody | None = None,
) -> Response:
    """A new `secret` (in this answer only); the old one also signs until `previous_secret_until`."""
    grace = body.grace_seconds if body and body.grace_seconds is not None else None
    try:
        endpoint, secret = service.rotate_secret(
            session,
            tenant_id=principal.tenant_id,
            endpoint_id=webhook_id,
            grace_seconds=settings.webhook_rotation_grace_seconds if grace is None else grace,
            secret_key=settings.secret_key,
        )
    except service.NotFound as exc:
        raise _not_found(exc) from exc
    return json_response({**service.endpoint_view(endpoint), "secret": secret})


@router.post("/webhooks/notify-secret", responses=_ERRORS, summary="Make or rotate the notify secret")
def rotate_notify_secret(
    session: SessionDep, settings: SettingsDep, principal: Manager, body: RotateBody | None = None
) -> Response:
    """The `secret` signing deliveries to per-job `notify` URLs (in this answer only); the previous one
    also signs until `previous_secret_until`."""
    grace = body.grace_seconds if body and body.grace_seconds is not None else None
    row, secret = service.rotate_notify_secret(
        session,
        tenant_id=principal.tenant_id,
        grace_seconds=settings.webhook_rotation_grace_seconds if grace is None else grace,
        secret_key=settings.secret_key,
    )
    return json_response({"secret": secret, "previous_secret_until": row.previous_secret_until})


@router.get("/webhooks/{webhook_id}/deliveries", responses=_ERRORS, summary="An endpoint's delivery log")
def list_deliveries(
    webhook_id: int,
    session: SessionDep,
    principal: Reader,
    state: Annotated[str | None, Query(pattern="^(pending|sending|succeeded|failed)$")] = None,
    limit: Annotated[int, Query(ge=1, le=service.MAX_PAGE)] = 50,
    before: Annotated[int | None, Query(ge=1, description="next page: the last id of this one")] = None,
) -> Response:
    """Deliveries newest first: state, attempts, last response code, excerpt and latency."""
    try:
        rows = service.list_deliveries(
            session,
            tenant_id=principal.tenant_id,
            endpoint_id=webhook_id,
            state=state,
            limit=limit,
            before=before,
        )
    except service.NotFound as exc:
        raise _not_found(exc) from exc
    return json_response({"items": [service.delivery_view(d) for d in rows]})


@router.post(
    "/webhooks/{webhook_id}/deliveries/{delivery_id}/replay",
    status_code=202,
    responses=_ERRORS,
    summary="Send a delivery again",
)
def replay_delivery(webhook_id: int, delivery_id: int, session: SessionDep, principal: Manager) -> Response:
    """A new delivery of the same event (same event id: receivers dedupe on it)."""
    try:
        again = service.replay_delivery(
            session, tenant_id=principal.tenant_id, endpoint_id=webhook_id, delivery_id=delivery_id
        )
    except service.NotFound as exc:
        raise _not_found(exc) from exc
    return json_response(service.delivery_view(again), 202)

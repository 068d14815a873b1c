"""Webhook endpoints, secrets and the delivery log of one tenant. The API routes and the CLI call these;
a missing row and another tenant's row look the same (NotFound), so tenants cannot probe each other."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from ipaddress import ip_address
from typing import Any

import sqlalchemy as sa
from pydantic_core import PydanticCustomError
from sqlalchemy.orm import Session

from framefleet.core.spec import check_webhook_url
from framefleet.db.models import WebhookDelivery, WebhookEndpoint, utcnow
from framefleet.storage.http import forbidden_reason
from framefleet.tenancy import secrets
from framefleet.webhooks import signing
from framefleet.webhooks.feed import DEFAULT_EVENT_TYPES, EVENT_TYPES

MAX_ENDPOINTS_PER_TENANT = 50
MAX_PAGE = 100
ENDPOINT = "endpoint"
NOTIFY = "notify"


class NotFound(Exception):
    pass


def check_url(url: str, *, allow_private: bool) -> str:
    """A webhook target URL; ValueError for a bad shape or, unless allowed, an internal host written
    literally (names are resolved and checked again each time a delivery is sent)."""
    try:
        check_webhook_url(url)
    except PydanticCustomError as exc:
        raise ValueError(exc.message()) from None
    host = url.partition("://")[2].split("/", 1)[0].rsplit("@", 1)[-1]
    host = host[1:].split("]", 1)[0] if host.startswith("[") else host.rsplit(":", 1)[0]
    if allow_private:
        return url
    if host.lower() == "localhost" or host.lower().endswith(".localhost"):
        raise ValueError(f"refusing {host!r}: a loopback name")
    try:
        reason = forbidden_reason(ip_address(host))
    except ValueError:
        return url
    if reason:
        raise ValueError(f"refusing {host}: a {reason}")
    return url


def check_event_types(event_types: Sequence[str]) -> list[str]:
    unknown = sorted(set(event_types) - set(EVENT_TYPES))
    if unknown:
        raise ValueError(f"unknown event types {unknown}; known: {', '.join(EVENT_TYPES)}")
    return sorted(set(event_types), key=EVENT_TYPES.index)


def create_endpoint(
    session: Session,
    *,
    tenant_id: int,
    url: str,
    event_types: Sequence[str],
    description: str | None,
    enabled: bool,
    secret_key: str,
    allow_private: bool,
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret (returned here only; stored encrypted)."""
    count = session.scalar(
        sa.select(sa.func.count())
        .select_from(WebhookEndpoint)
        .where(WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.kind == ENDPOINT)
    )
    if (count or 0) >= MAX_ENDPOINTS_PER_TENANT:
        raise ValueError(f"a tenant has at most {MAX_ENDPOINTS_PER_TENANT} endpoints")
    raw = signing.new_secret()
    endpoint = WebhookEndpoint(
        tenant_id=tenant_id,
        kind=ENDPOINT,
        url=check_url(url, allow_private=allow_private),
        event_types=check_event_types(event_types),
        description=description,
        enabled=enabled,
        secret=secrets.encrypt(raw, secret_key=secret_key),
        status="ok",
    )
    session.add(endpoint)
    session.commit()
    return endpoint, raw


def list_endpoints(session: Session, *, tenant_id: int) -> list[WebhookEndpoint]:
    query = sa.select(WebhookEndpoint).where(
        WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.kind == ENDPOINT
    )
    return list(session.scalars(query.order_by(WebhookEndpoint.id)))


def get_endpoint(session: Session, *, tenant_id: int, endpoint_id: int) -> WebhookEndpoint:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is None or endpoint.tenant_id != tenant_id or endpoint.kind != ENDPOINT:
        raise NotFound(f"no webhook endpoint {endpoint_id}")
    return endpoint


def update_endpoint(
    session: Session, *, tenant_id: int, endpoint_id: int, changes: dict[str, Any], allow_private: bool
) -> WebhookEndpoint:
    """Change url, event_types, description or enabled (re-enabling also clears `failing`)."""
    endpoint = get_endpoint(session, tenant_id=tenant_id, endpoint_id=endpoint_id)
    if "url" in changes:
        endpoint.url = check_url(changes["url"], allow_private=allow_private)
    if "event_types" in changes:
        endpoint.event_types = check_event_types(changes["event_types"])
    if "description" in changes:
        endpoint.description = changes["description"]
    if "enabled" in changes:
        if changes["enabled"] and not endpoint.enabled:
            endpoint.status, endpoint.failing_since = "ok", None
        endpoint.enabled = bool(changes["enabled"])
    endpoint.updated_at = utcnow()
    session.commit()
    return endpoint


def delete_endpoint(session: Session, *, tenant_id: int, endpoint_id: int) -> None:
    """Remove an endpoint with its delivery log; its waiting deliveries are never sent."""
    endpoint = get_endpoint(session, tenant_id=tenant_id, endpoint_id=endpoint_id)
    session.execute(sa.delete(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint.id))
    session.delete(endpoint)
    session.commit()


def _rotate(endpoint: WebhookEndpoint, *, grace_seconds: float, secret_key: str) -> str:
    raw = signing.new_secret()
    endpoint.previous_secret = endpoint.secret if grace_seconds > 0 else None
    endpoint.previous_secret_until = (
        utcnow() + timedelta(seconds=grace_seconds) if grace_seconds > 0 else None
    )
    endpoint.secret = secrets.encrypt(raw, secret_key=secret_key)
    endpoint.updated_at = utcnow()
    return raw


def rotate_secret(
    session: Session, *, tenant_id: int, endpoint_id: int, grace_seconds: float, secret_key: str
) -> tuple[WebhookEndpoint, str]:
    """A new secret (returned here only); the old one keeps signing too for `grace_seconds`."""
    endpoint = get_endpoint(session, tenant_id=tenant_id, endpoint_id=endpoint_id)
    raw = _rotate(endpoint, grace_seconds=grace_seconds, secret_key=secret_key)
    session.commit()
    return endpoint, raw


def notify_secret_row(session: Session, *, tenant_id: int, secret_key: str) -> WebhookEndpoint:
    """The tenant's signing secret for per-job notify URLs, made on first need (flushed, not committed)."""
    row = session.scalar(
        sa.select(WebhookEndpoint).where(
            WebhookEndpoint.tenant_id == tenant_id, WebhookEndpoint.kind == NOTIFY
        )
    )
    if row is None:
        row = WebhookEndpoint(
            tenant_id=tenant_id,
            kind=NOTIFY,
            url="",
            event_types=[],
            enabled=True,
            secret=secrets.encrypt(signing.new_secret(), secret_key=secret_key),
            status="ok",
        )
        session.add(row)
        session.flush()
    return row


def rotate_notify_secret(
    session: Session, *, tenant_id: int, grace_seconds: float, secret_key: str
) -> tuple[WebhookEndpoint, str]:
    """A new notify secret (returned here only); the previous one keeps signing for `grace_seconds`."""
    row = notify_secret_row(session, tenant_id=tenant_id, secret_key=secret_key)
    raw = _rotate(row, grace_seconds=grace_seconds, secret_key=secret_key)
    session.commit()
    return row, raw


def signing_secrets(endpoint: WebhookEndpoint, *, secret_key: str, now: datetime) -> list[str]:
    """The secrets a delivery is signed with now: the current one, and the previous one in its grace."""
    found = [secrets.decrypt(endpoint.secret, secret_key=secret_key)]
    if endpoint.previous_secret and endpoint.previous_secret_until and endpoint.previous_secret_until > now:
        found.append(secrets.decrypt(endpoint.previous_secret, secret_key=secret_key))
    return found


def list_deliveries(
    session: Session,
    *,
    tenant_id: int,
    endpoint_id: int,
    state: str | None = None,
    limit: int = 50,
    before: int | None = None,
) -> list[WebhookDelivery]:
    """The endpoint's delivery log, newest first (`before`: a delivery id, for the next page)."""
    get_endpoint(session, tenant_id=tenant_id, endpoint_id=endpoint_id)
    query = sa.select(WebhookDelivery).where(WebhookDelivery.endpoint_id == endpoint_id)
    if state is not None:
        query = query.where(WebhookDelivery.state == state)
    if before is not None:
        query = query.where(WebhookDelivery.id < before)
    return list(session.scalars(query.order_by(WebhookDelivery.id.desc()).limit(min(limit, MAX_PAGE))))


def replay_delivery(
    session: Session, *, tenant_id: int, endpoint_id: int, delivery_id: int
) -> WebhookDelivery:
    """Send a delivery's event again, as a new delivery (same event id, so receivers can dedupe)."""
    get_endpoint(session, tenant_id=tenant_id, endpoint_id=endpoint_id)
    old = session.get(WebhookDelivery, delivery_id)
    if old is None or old.endpoint_id != endpoint_id:
        raise NotFound(f"no delivery {delivery_id} of webhook endpoint {endpoint_id}")
    again = WebhookDelivery(
        event_id=old.event_id,
        tenant_id=old.tenant_id,
        endpoint_id=old.endpoint_id,
        url=old.url,
        target=old.target,
        job_id=old.job_id,
        sequence=old.sequence,
    )
    session.add(again)
    session.commit()
    return again


def endpoint_view(endpoint: WebhookEndpoint) -> dict[str, Any]:
    """The public representation (never a secret)."""
    return {
        "id": endpoint.id,
        "url": endpoint.url,
        "event_types": endpoint.event_types or list(DEFAULT_EVENT_TYPES),
        "description": endpoint.description,
        "enabled": endpoint.enabled,
        "status": endpoint.status,
        "failing_since": endpoint.failing_since,
        "previous_secret_until": endpoint.previous_secret_until,
        "created_at": endpoint.created_at,
        "updated_at": endpoint.updated_at,
    }


def delivery_view(delivery: WebhookDelivery) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event_id": delivery.event_id,
        "job_id": delivery.job_id,
        "sequence": delivery.sequence,
        "url": delivery.url,
        "state": delivery.state,
        "attempts": delivery.attempts,
        "next_attempt_at": delivery.next_attempt_at if delivery.state == "pending" else None,
        "response_status": delivery.response_status,
        "response_excerpt": delivery.response_excerpt,
        "latency_ms": delivery.latency_ms,
        "error": delivery.error,
        "created_at": delivery.created_at,
        "delivered_at": delivery.delivered_at,
    }

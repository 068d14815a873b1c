"""Tenants and keys for admins: create, list, get, update, suspend, reactivate; create, list, revoke, rotate.

Each change writes its audit row in the same transaction and commits. Routes and CLI commands only call these.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import redis
import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.core.states import JobState, TransitionError
from framefleet.db.models import ApiKey, Job, Tenant, utcnow
from framefleet.jobs import state_machine
from framefleet.jobs.dispatch import dispatch_many
from framefleet.keys import check_tenant_name
from framefleet.keys import create_key as make_key
from framefleet.lifecycle.retention import retention_of
from framefleet.logging import get_logger
from framefleet.scheduling.fairshare import weight_of
from framefleet.tenancy import audit
from framefleet.tenancy.access import ACTIVE, SUSPENDED
from framefleet.tenancy.audit import Actor
from framefleet.tenancy.quotas import quotas_of
from framefleet.tenancy.ratelimit import tenant_limits

if TYPE_CHECKING:
    from celery import Celery

log = get_logger(__name__)

# Job.pending_reason of a job held because its tenant is suspended (released on reactivation).
TENANT_SUSPENDED = "tenant-suspended"


class NotFound(LookupError):
    pass


class Conflict(ValueError):
    pass


def find_tenant(session: Session, *, name: str) -> Tenant | None:
    """The tenant called `name`, if any."""
    return session.scalar(sa.select(Tenant).where(Tenant.name == name))


def get_tenant(session: Session, *, name: str) -> Tenant:
    """The tenant called `name`; NotFound otherwise."""
    tenant = find_tenant(session, name=name)
    if tenant is None:
        raise NotFound(f"no tenant {name!r}")
    return tenant


def list_tenants(session: Session) -> list[Tenant]:
    """Every tenant, by name."""
    return list(session.scalars(sa.select(Tenant).order_by(Tenant.name)))


def create_tenant(
    session: Session, *, name: str, settings: dict[str, Any] | None = None, actor: Actor
) -> Tenant:
    """A new active tenant; ValueError for a name that is not path-safe, Conflict when it exists."""
    check_tenant_name(name)
    tenant_limits(settings)
    quotas_of(settings)
    weight_of(settings)
    retention_of(settings)
    if find_tenant(session, name=name) is not None:
        raise Conflict(f"tenant {name!r} already exists")
    tenant = Tenant(name=name, settings=settings or {}, status=ACTIVE)
    session.add(tenant)
    session.flush()
    audit.record(session, actor, action="tenant.create", target=f"tenant:{name}")
    session.commit()
    return tenant


def update_tenant(session: Session, *, name: str, settings: dict[str, Any], actor: Actor) -> Tenant:
    """Replace a tenant's settings; ValueError when their `rate_limits` or `quotas` are malformed."""
    tenant_limits(settings)
    quotas_of(settings)
    weight_of(settings)
    retention_of(settings)
    tenant = get_tenant(session, name=name)
    tenant.settings = settings
    tenant.updated_at = utcnow()
    audit.record(
        session, actor, action="tenant.update", target=f"tenant:{name}", details={"settings": settings}
    )
    session.commit()
    return tenant


def suspend_tenant(session: Session, *, name: str, reason: str | None, actor: Actor) -> Tenant:
    """Suspend a tenant: its keys are refused (403) and workers hold its queued jobs in `pending`.

    Conflict when an admin would suspend its own tenant (and so lock itself out).
    """
    tenant = get_tenant(session, name=name)
    if actor.tenant_id == tenant.id:
        raise Conflict("an admin cannot suspend its own tenant; use a key of another tenant or the CLI")
    tenant.status = SUSPENDED
    tenant.status_reason = reason
    tenant.updated_at = utcnow()
    audit.record(session, actor, action="tenant.suspend", target=f"tenant:{name}", details={"reason": reason})
    session.commit()
    return tenant


def reactivate_tenant(
    session: Session,
    redis_client: redis.Redis | None,
    *,
    name: str,
    actor: Actor,
    celery: Celery | None = None,
    events_ttl_seconds: int = 7 * 24 * 3600,
) -> tuple[Tenant, int]:
    """Reactivate a tenant and queue again the jobs held while it was suspended; returns how many."""
    tenant = get_tenant(session, name=name)
    tenant.status = ACTIVE
    tenant.status_reason = None
    tenant.updated_at = utcnow()
    held = list(
        session.scalars(
            sa.select(Job.id).where(
                Job.tenant_id == tenant.id,
                Job.state == JobState.pending.value,
                Job.pending_reason == TENANT_SUSPENDED,
            )
        )
    )
    reason = f"tenant {name!r} reactivated"
    released = []
    for job_id in held:
        try:
            released.append(
                state_machine.transition(
                    session,
                    job_id,
                    JobState.queued,
                    reason=reason,
                    expect=[JobState.pending],
                    values={"pending_reason": None},
                    actor=actor.actor,
                )
            )
        except TransitionError:
            continue  # canceled meanwhile
    audit.record(
        session,
        actor,
        action="tenant.reactivate",
        target=f"tenant:{name}",
        details={"released_jobs": len(released)},
    )
    session.commit()
    if released:
        # The database says queued; a failed publish is repaired by the reconciler.
        dispatch_many(released, celery=celery)
        if redis_client is not None:
            for job in released:
                try:
                    state_machine.announce(redis_client, job, reason=reason, ttl_seconds=events_ttl_seconds)
                except redis.RedisError as exc:
                    log.warning(
                        "released job not announced", job_id=job.id, error=f"{type(exc).__name__}: {exc}"
                    )
    return tenant, len(released)


def hold_for_suspension(session: Session, *, job_id: str, tenant: str, worker: str) -> Job:
    """At claim: a queued job of a suspended tenant goes to `pending` (TransitionError if it moved)."""
    return state_machine.transition(
        session,
        job_id,
        JobState.pending,
        reason=f"tenant {tenant!r} is suspended; the job waits until it is reactivated",
        expect=[JobState.queued],
        worker=worker,
        values={"pending_reason": TENANT_SUSPENDED},
    )


def _key_target(key: ApiKey) -> str:
    return f"key:{key.id}:{key.prefix}"


def create_key(
    session: Session,
    *,
    tenant: str,
    role: str,
    expires_at: datetime | None = None,
    description: str | None = None,
    allowed_cidrs: Sequence[str] | None = None,
    actor: Actor,
) -> tuple[str, ApiKey]:
    """A new key for an existing tenant; the raw key is returned once and never stored."""
    get_tenant(session, name=tenant)
    if expires_at is not None and expires_at <= utcnow():
        raise ValueError("expires_at is in the past")
    raw, key = make_key(
        session,
        tenant=tenant,
        role=role,
        expires_at=expires_at,
        description=description,
        allowed_cidrs=allowed_cidrs,
        created_by=actor.actor,
    )
    audit.record(
        session,
        actor,
        action="key.create",
        target=_key_target(key),
        details={"tenant": tenant, "role": key.role},
    )
    session.commit()
    return raw, key


def list_keys(
    session: Session, *, tenant: str | None = None, include_revoked: bool = False
) -> list[tuple[ApiKey, str]]:
    """Keys with their tenant's name, newest first."""
    query = sa.select(ApiKey, Tenant.name).join(Tenant, Tenant.id == ApiKey.tenant_id)
    if tenant is not None:
        query = query.where(Tenant.name == tenant)
    if not include_revoked:
        query = query.where(ApiKey.revoked_at.is_(None))
    return [(key, name) for key, name in session.execute(query.order_by(ApiKey.id.desc()))]


def get_key(session: Session, *, key_id: int) -> tuple[ApiKey, str]:
    """A key and its tenant's name; NotFound otherwise."""
    row = session.execute(
        sa.select(ApiKey, Tenant.name).join(Tenant, Tenant.id == ApiKey.tenant_id).where(ApiKey.id == key_id)
    ).one_or_none()
    if row is None:
        raise NotFound(f"no key {key_id}")
    return row[0], row[1]


def revoke_key(session: Session, *, key_id: int, actor: Actor) -> ApiKey:
    """Revoke a key (at once in this process; other API processes within their key cache's TTL)."""
    key, _ = get_key(session, key_id=key_id)
    if key.revoked_at is not None:
        raise Conflict(f"key {key_id} is already revoked")
    key.revoked_at = utcnow()
    audit.record(session, actor, action="key.revoke", target=_key_target(key))
    session.commit()
    return key


def rotate_key(session: Session, *, key_id: int, actor: Actor) -> tuple[str, ApiKey]:
    """A new key with the old one's tenant, role, expiry, description and networks; the old one is revoked."""
    old, tenant = get_key(session, key_id=key_id)
    if old.revoked_at is not None:
        raise Conflict(f"key {key_id} is revoked; create a new one instead")
    old.revoked_at = utcnow()
    raw, key = make_key(
        session,
        tenant=tenant,
        role=old.role,
        expires_at=old.expires_at,
        description=old.description,
        allowed_cidrs=old.allowed_cidrs,
        created_by=actor.actor,
        replaces_id=old.id,
    )
    audit.record(
        session, actor, action="key.rotate", target=_key_target(old), details={"new_key": _key_target(key)}
    )
    session.commit()
    return raw, key


def tenant_view(tenant: Tenant) -> dict[str, Any]:
    """The public representation of a tenant."""
    return {
        "name": tenant.name,
        "status": tenant.status,
        "status_reason": tenant.status_reason,
        "settings": tenant.settings or {},
        "created_at": tenant.created_at,
        "updated_at": tenant.updated_at,
    }


def key_view(key: ApiKey, tenant: str) -> dict[str, Any]:
    """The public representation of a key (never its hash)."""
    return {
        "id": key.id,
        "prefix": key.prefix,
        "tenant": tenant,
        "role": key.role,
        "description": key.description,
        "allowed_cidrs": key.allowed_cidrs,
        "expires_at": key.expires_at,
        "created_at": key.created_at,
        "created_by": key.created_by,
        "last_used_at": key.last_used_at,
        "revoked_at": key.revoked_at,
        "replaces_id": key.replaces_id,
    }

"""API keys: each belongs to a tenant, is shown once, and is stored only as a SHA-256 hash.

Keys are 32 random bytes, so a plain hash is enough (no slow KDF needed to resist guessing); the short
prefix kept beside the hash lets an operator tell keys apart in listings.
"""

from __future__ import annotations

import hashlib
import ipaddress
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.core.specbase import NAME_PATTERN
from framefleet.db.models import ApiKey, Tenant, utcnow
from framefleet.logging import get_logger
from framefleet.tenancy.permissions import ALIASES, ROLES, canonical_role
from framefleet.tenancy.quotas import Quotas, quotas_of
from framefleet.tenancy.ratelimit import TenantLimits, tenant_limits

log = get_logger(__name__)

__all__ = ["KEY_PREFIX", "ROLES", "Principal", "authenticate", "create_key", "hash_key", "looks_like_key"]

KEY_PREFIX = "ff_"
PREFIX_LENGTH = 10

Network = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class Principal:
    tenant_id: int
    tenant: str
    key_id: int | None  # None for a single sign-on token (subject says who)
    role: str
    key_prefix: str = ""
    tenant_status: str = "active"
    expires_at: datetime | None = None
    networks: tuple[Network, ...] = ()
    # The tenant's own rate limits (its settings' `rate_limits`), read with the key and cached with it.
    limits: TenantLimits = field(default_factory=TenantLimits)
    # The tenant's job quotas (its settings' `quotas`), cached the same way.
    quotas: Quotas = field(default_factory=Quotas)
    # The `sub` of a single sign-on token (framefleet/tenancy/oidc.py); None for an API key.
    subject: str | None = None

    @property
    def actor(self) -> str:
        """How audit rows and job history name this caller (64 characters at most, the column's width)."""
        if self.subject is not None:
            return f"oidc:{self.subject}"[:64]
        return f"key:{self.key_id}:{self.key_prefix}"


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def check_tenant_name(name: str) -> None:
    """ValueError unless `name` is path-safe: it is also the tenant's folder and key prefix in storage."""
    if not NAME_PATTERN.match(name):
        raise ValueError("a tenant name is 1-64 letters, digits, '_', '-' or '.', starting alphanumeric")


def parse_cidrs(cidrs: Sequence[str] | None) -> list[str] | None:
    """Normalised CIDR strings (a bare address is its /32 or /128); ValueError naming a bad one."""
    if not cidrs:
        return None
    found = []
    for text in cidrs:
        try:
            found.append(str(ipaddress.ip_network(text.strip(), strict=False)))
        except ValueError:
            raise ValueError(f"{text!r} is not an IP network (like 10.0.0.0/8 or 2001:db8::/32)") from None
    return found


def get_or_create_tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalar(sa.select(Tenant).where(Tenant.name == name))
    if tenant is None:
        check_tenant_name(name)
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def new_raw_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def create_key(
    session: Session,
    *,
    tenant: str,
    role: str = "admin",
    expires_at: datetime | None = None,
    description: str | None = None,
    allowed_cidrs: Sequence[str] | None = None,
    created_by: str | None = None,
    replaces_id: int | None = None,
) -> tuple[str, ApiKey]:
    """Create a key for `tenant` (created if new). Returns the raw key, which is never stored."""
    role = canonical_role(role)
    check_tenant_name(tenant)
    owner = get_or_create_tenant(session, tenant)
    raw = new_raw_key()
    key = ApiKey(
        tenant_id=owner.id,
        prefix=raw[:PREFIX_LENGTH],
        key_hash=hash_key(raw),
        role=role,
        expires_at=expires_at,
        description=description,
        allowed_cidrs=parse_cidrs(allowed_cidrs),
        created_by=created_by,
        replaces_id=replaces_id,
    )
    session.add(key)
    session.flush()
    return raw, key


def looks_like_key(raw: str) -> bool:
    """Whether `raw` has the shape of a key at all (anything else is refused without a lookup)."""
    return raw.startswith(KEY_PREFIX) and len(raw) <= 256


def authenticate(session: Session, raw: str) -> Principal | None:
    """The principal behind a raw key, or None for an unknown or revoked key.

    An expired key, or one of a suspended tenant, still has a principal: the caller refuses it with a reason.
    """
    if not looks_like_key(raw):
        return None
    row = session.execute(
        sa.select(ApiKey, Tenant.name, Tenant.status, Tenant.settings)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(ApiKey.key_hash == hash_key(raw), ApiKey.revoked_at.is_(None))
    ).one_or_none()
    if row is None:
        return None
    key, tenant_name, tenant_status, tenant_settings = row
    limits, quotas = _tenant_rules(tenant_name, tenant_settings)
    return Principal(
        tenant_id=key.tenant_id,
        tenant=tenant_name,
        key_id=key.id,
        role=ALIASES.get(key.role, key.role),
        key_prefix=key.prefix,
        tenant_status=tenant_status,
        expires_at=key.expires_at,
        networks=tuple(ipaddress.ip_network(c) for c in key.allowed_cidrs or ()),
        limits=limits,
        quotas=quotas,
    )


def token_principal(
    session: Session, *, tenant: str, role: str, subject: str, expires_at: datetime
) -> Principal | None:
    """The principal of a verified single sign-on token; None when its tenant is not one of ours."""
    row = session.execute(
        sa.select(Tenant.id, Tenant.status, Tenant.settings).where(Tenant.name == tenant)
    ).one_or_none()
    if row is None:
        return None
    tenant_id, tenant_status, tenant_settings = row
    limits, quotas = _tenant_rules(tenant, tenant_settings)
    return Principal(
        tenant_id=tenant_id,
        tenant=tenant,
        key_id=None,
        role=role,
        tenant_status=tenant_status,
        expires_at=expires_at,
        limits=limits,
        quotas=quotas,
        subject=subject,
    )


def _tenant_rules(tenant_name: str, tenant_settings: dict[str, Any] | None) -> tuple[TenantLimits, Quotas]:
    """The tenant's rate limits and quotas from its settings (the defaults where they do not parse)."""
    try:
        limits = tenant_limits(tenant_settings)
    except ValueError as exc:
        # Settings are checked when written; rows from before that check fall back to the defaults.
        log.warning("tenant rate limits ignored", tenant=tenant_name, error=str(exc))
        limits = TenantLimits()
    try:
        quotas = quotas_of(tenant_settings)
    except ValueError as exc:
        log.warning("tenant quotas ignored", tenant=tenant_name, error=str(exc))
        quotas = Quotas()
    return limits, quotas


def touch_key(session: Session, key_id: int) -> None:
    """Record that a key was used now (callers throttle this: it is not a write per request)."""
    session.execute(sa.update(ApiKey).where(ApiKey.id == key_id).values(last_used_at=utcnow()))


def revoke_key(session: Session, key_id: int) -> None:
    session.execute(
        sa.update(ApiKey).where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None)).values(revoked_at=utcnow())
    )

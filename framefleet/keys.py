"""API keys: each belongs to a tenant, is shown once, and is stored only as a SHA-256 hash.

Keys are 32 random bytes, so a plain hash is enough (no slow KDF needed to resist guessing); the short
prefix kept beside the hash lets an operator tell keys apart in listings.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.core.specbase import NAME_PATTERN
from framefleet.db.models import ApiKey, Tenant, utcnow

KEY_PREFIX = "ff_"
ROLES = ("admin", "submitter", "viewer")


@dataclass(frozen=True)
class Principal:
    tenant_id: int
    tenant: str
    key_id: int
    role: str


def hash_key(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def get_or_create_tenant(session: Session, name: str) -> Tenant:
    tenant = session.scalar(sa.select(Tenant).where(Tenant.name == name))
    if tenant is None:
        tenant = Tenant(name=name)
        session.add(tenant)
        session.flush()
    return tenant


def create_key(session: Session, *, tenant: str, role: str = "admin") -> tuple[str, ApiKey]:
    """Create a key for `tenant` (created if new). Returns the raw key, which is never stored."""
    if role not in ROLES:
        raise ValueError(f"role must be one of {', '.join(ROLES)}")
    if not NAME_PATTERN.match(tenant):
        # The name is also the tenant's folder and key prefix in storage (storage/namespace.py).
        raise ValueError("a tenant name is 1-64 letters, digits, '_', '-' or '.', starting alphanumeric")
    owner = get_or_create_tenant(session, tenant)
    raw = KEY_PREFIX + secrets.token_urlsafe(32)
    key = ApiKey(tenant_id=owner.id, prefix=raw[:10], key_hash=hash_key(raw), role=role)
    session.add(key)
    session.flush()
    return raw, key


def looks_like_key(raw: str) -> bool:
    """Whether `raw` has the shape of a key at all (anything else is refused without a lookup)."""
    return raw.startswith(KEY_PREFIX) and len(raw) <= 256


def authenticate(session: Session, raw: str) -> Principal | None:
    """The principal behind a raw key, or None for an unknown or revoked key."""
    if not looks_like_key(raw):
        return None
    row = session.execute(
        sa.select(ApiKey.id, ApiKey.role, Tenant.id, Tenant.name)
        .join(Tenant, Tenant.id == ApiKey.tenant_id)
        .where(ApiKey.key_hash == hash_key(raw), ApiKey.revoked_at.is_(None))
    ).one_or_none()
    if row is None:
        return None
    key_id, role, tenant_id, tenant_name = row
    return Principal(tenant_id=tenant_id, tenant=tenant_name, key_id=key_id, role=role)


def revoke_key(session: Session, key_id: int) -> None:
    session.execute(sa.update(ApiKey).where(ApiKey.id == key_id).values(revoked_at=utcnow()))

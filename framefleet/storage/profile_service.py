"""Storage profiles in the database: create, read, change and delete a tenant's profiles, and load them
(with their credentials decrypted, for the worker and downloads; without, for the API's name checks)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.config import Settings
from framefleet.core.specbase import NAME_PATTERN
from framefleet.db.models import StorageProfile, utcnow
from framefleet.storage.profiles import Profile, check_profile
from framefleet.tenancy import secrets

FIELDS = ("kind", "bucket", "prefix", "endpoint", "region", "credentials", "default_output")


class ProfileInvalid(ValueError):
    """A profile field is wrong: `field` names it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class ProfileNotFound(LookupError):
    """No profile of that name for this tenant."""


class ProfileExists(ValueError):
    """The tenant already has a profile of that name."""


def profile_of(row: StorageProfile, *, secret_key: str | None) -> Profile:
    """The profile a row holds; its credentials decrypted only when `secret_key` is given."""
    credentials: dict[str, str] | None = None
    if secret_key is not None:
        credentials = (
            json.loads(secrets.decrypt(row.credentials, secret_key=secret_key)) if row.credentials else {}
        )
    return Profile(
        name=row.name,
        kind=row.kind,
        bucket=row.bucket,
        prefix=row.prefix,
        endpoint=row.endpoint,
        region=row.region,
        credentials=credentials,
        default_output=row.default_output,
    )


def load(session: Session, *, tenant_id: int, secret_key: str | None) -> dict[str, Profile]:
    """The tenant's profiles by name (credentials decrypted only with `secret_key`)."""
    rows = session.scalars(sa.select(StorageProfile).where(StorageProfile.tenant_id == tenant_id))
    return {row.name: profile_of(row, secret_key=secret_key) for row in rows}


def rows_of(session: Session, *, tenant_id: int) -> list[StorageProfile]:
    return list(
        session.scalars(
            sa.select(StorageProfile)
            .where(StorageProfile.tenant_id == tenant_id)
            .order_by(StorageProfile.name)
        )
    )


def get(session: Session, *, tenant_id: int, name: str) -> StorageProfile:
    row = session.scalar(
        sa.select(StorageProfile).where(StorageProfile.tenant_id == tenant_id, StorageProfile.name == name)
    )
    if row is None:
        raise ProfileNotFound(name)
    return row


def _checked(settings: Settings, values: Mapping[str, Any]) -> None:
    problem = check_profile(
        kind=values["kind"],
        bucket=values["bucket"],
        prefix=values.get("prefix") or "",
        endpoint=values.get("endpoint"),
        credentials=values.get("credentials"),
        file_roots=settings.profile_file_roots,
    )
    if problem is not None:
        raise ProfileInvalid(*problem)


def _clear_default(session: Session, tenant_id: int, keep: str) -> None:
    session.execute(
        sa.update(StorageProfile)
        .where(StorageProfile.tenant_id == tenant_id, StorageProfile.name != keep)
        .values(default_output=False)
    )


def create(
    session: Session, *, tenant_id: int, name: str, values: Mapping[str, Any], settings: Settings
) -> StorageProfile:
    """A new profile (credentials encrypted); ProfileInvalid naming the field, ProfileExists."""
    if not NAME_PATTERN.match(name):
        raise ProfileInvalid("name", "1-64 letters, digits, '_', '-' or '.', starting alphanumeric")
    _checked(settings, values)
    try:
        get(session, tenant_id=tenant_id, name=name)
    except ProfileNotFound:
        pass
    else:
        raise ProfileExists(name)
    credentials = values.get("credentials")
    row = StorageProfile(
        tenant_id=tenant_id,
        name=name,
        kind=values["kind"],
        bucket=values["bucket"],
        prefix=(values.get("prefix") or "").strip("/"),
        endpoint=values.get("endpoint"),
        region=values.get("region"),
        credentials=secrets.encrypt(json.dumps(credentials), secret_key=settings.secret_key)
        if credentials
        else None,
        default_output=bool(values.get("default_output")),
    )
    if row.default_output:
        _clear_default(session, tenant_id, name)
    session.add(row)
    session.commit()
    return row


def update(
    session: Session, *, tenant_id: int, name: str, changes: Mapping[str, Any], settings: Settings
) -> StorageProfile:
    """Change some fields (credentials replaced whole when given); the result is checked like a new one."""
    row = get(session, tenant_id=tenant_id, name=name)
    current = profile_of(row, secret_key=settings.secret_key)
    values: dict[str, Any] = {
        "kind": current.kind,
        "bucket": current.bucket,
        "prefix": current.prefix,
        "endpoint": current.endpoint,
        "region": current.region,
        "credentials": dict(current.credentials or {}),
        "default_output": current.default_output,
        **changes,
    }
    _checked(settings, values)
    row.kind, row.bucket, row.endpoint, row.region = (
        values["kind"],
        values["bucket"],
        values["endpoint"],
        values["region"],
    )
    row.prefix = (values["prefix"] or "").strip("/")
    credentials = values["credentials"]
    row.credentials = (
        secrets.encrypt(json.dumps(credentials), secret_key=settings.secret_key) if credentials else None
    )
    row.default_output = bool(values["default_output"])
    row.updated_at = utcnow()
    if row.default_output:
        _clear_default(session, tenant_id, name)
    session.commit()
    return row


def delete(session: Session, *, tenant_id: int, name: str) -> None:
    session.delete(get(session, tenant_id=tenant_id, name=name))
    session.commit()


def view(row: StorageProfile) -> dict[str, Any]:
    """The public view: everything but the credentials, which are never returned."""
    return {
        "name": row.name,
        "kind": row.kind,
        "bucket": row.bucket,
        "prefix": row.prefix,
        "endpoint": row.endpoint,
        "region": row.region,
        "has_credentials": row.credentials is not None,
        "default_output": row.default_output,
        "uri": f"storage://{row.name}/",
        "created_at": row.created_at,
        "updated_at": row.updated_at,
    }

"""Where encrypted secrets are stored, and the pass that re-encrypts them under the newest key.

`ENCRYPTED_COLUMNS` is the one list of columns holding tokens from framefleet/tenancy/secrets.py; a new
kind of stored secret is added here so that `framefleet secrets rotate` re-encrypts it too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import InstrumentedAttribute, Session

from framefleet.db.models import StorageProfile, WebhookEndpoint
from framefleet.tenancy import secrets

# (primary key, encrypted columns) per table.
ENCRYPTED_COLUMNS: tuple[tuple[InstrumentedAttribute[int], tuple[InstrumentedAttribute[Any], ...]], ...] = (
    (WebhookEndpoint.id, (WebhookEndpoint.secret, WebhookEndpoint.previous_secret)),
    (StorageProfile.id, (StorageProfile.credentials,)),
)


@dataclass(frozen=True)
class Rotation:
    """What a re-encryption pass did: tokens rewritten under the newest key, and tokens already under it."""

    rewritten: int
    current: int


def reencrypt_all(session: Session, *, secret_key: str) -> Rotation:
    """Re-encrypt every stored secret not yet under the newest key (in the caller's transaction).

    Idempotent: a token the newest key opens is left alone, so a second pass rewrites nothing. A token no
    configured key opens raises SecretError and the caller's transaction rolls back (nothing half-done).
    """
    rewritten = current = 0
    for key_column, columns in ENCRYPTED_COLUMNS:
        table = key_column.class_.__table__
        rows = session.execute(sa.select(key_column, *columns)).all()
        for row in rows:
            changes: dict[str, str] = {}
            for column, token in zip(columns, row[1:], strict=True):
                if token is None:
                    continue
                if secrets.is_current(token, secret_key=secret_key):
                    current += 1
                else:
                    changes[column.key] = secrets.rotate(token, secret_key=secret_key)
            if changes:
                session.execute(sa.update(table).where(table.c[key_column.key] == row[0]).values(**changes))
                rewritten += len(changes)
    return Rotation(rewritten=rewritten, current=current)

"""The store edge of the lifecycle: asking a tenant's store whether an object is still there."""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.config import Settings
from framefleet.db.models import Tenant
from framefleet.storage import backend_within
from framefleet.storage.base import StorageError
from framefleet.storage.namespace import namespace_for


def exists_for(session: Session, settings: Settings) -> Callable[[int, str], bool]:
    """`exists(tenant_id, uri)` through the tenant's own namespace. An object the store cannot answer for
    counts as present: a store that is down must not wipe the counters."""
    names = dict(session.execute(sa.select(Tenant.id, Tenant.name)).all())

    def exists(tenant_id: int, uri: str) -> bool:
        try:
            namespace = namespace_for(settings, names[tenant_id])
            return backend_within(uri, namespace, write=False, settings=settings).exists(uri)
        except (StorageError, KeyError, ValueError):
            return True

    return exists

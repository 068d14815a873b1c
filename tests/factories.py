"""Jobs made straight in the database, for tests that need a queued job but not the API."""

from __future__ import annotations

from typing import Any

from framefleet.core.spec import JobSpec
from framefleet.db.session import session_scope
from framefleet.jobs import service
from framefleet.keys import authenticate


def queued_job(key: str, document: dict[str, Any], *, pool: str | None = None) -> str:
    """Record a queued job for the tenant of API key `key` (nothing is published); its id."""
    spec = JobSpec.model_validate(document)
    with session_scope() as session:
        principal = authenticate(session, key)
        assert principal is not None, "unknown API key"
        row = service.new_job_row(
            principal=principal, spec=spec, document=spec.model_dump(mode="json"), pool=pool
        )
        service.insert_jobs(session, [row])
    return str(row["id"])

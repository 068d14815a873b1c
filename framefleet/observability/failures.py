"""Recent failures by class across the installation (GET /v1/failures, the console's Fleet page): how many
jobs ended `failed` in a window, per failure class, with the latest ones to look at."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Session

from framefleet.core.states import JobState
from framefleet.db.models import Job, Tenant

RECENT = 20
# An error can be a long ffmpeg stderr tail: the summary shows its start, the job page the rest.
ERROR_EXCERPT = 300


def by_class(session: Session, *, since: datetime) -> dict[str, Any]:
    failed = sa.and_(Job.state == JobState.failed.value, Job.finished_at >= since)
    counts = session.execute(
        sa.select(Job.failure_class, sa.func.count(), sa.func.max(Job.finished_at))
        .where(failed)
        .group_by(Job.failure_class)
    ).all()
    recent = session.execute(
        sa.select(Job.id, Tenant.name, Job.failure_class, Job.error, Job.finished_at)
        .join(Tenant, Tenant.id == Job.tenant_id)
        .where(failed)
        .order_by(Job.finished_at.desc())
        .limit(RECENT)
    ).all()
    return {
        "classes": sorted(
            (
                {"failure_class": name or "unknown", "count": count, "last_at": last}
                for name, count, last in counts
            ),
            key=lambda item: (-item["count"], item["failure_class"]),
        ),
        "recent": [
            {
                "job_id": job_id,
                "tenant": tenant,
                "failure_class": name or "unknown",
                "error": (error or "")[:ERROR_EXCERPT],
                "finished_at": at,
            }
            for job_id, tenant, name, error, at in recent
        ],
    }

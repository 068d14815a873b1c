"""The submission intake against the real database and broker: group commit, one publish per job, and a
reused idempotency key failing alone."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from framefleet.celery_app import celery_for
from framefleet.config import get_settings
from framefleet.core.spec import JobSpec
from framefleet.db.models import Job, JobTransition
from framefleet.db.session import session_scope
from framefleet.jobs import service
from framefleet.jobs.intake import Intake
from framefleet.keys import Principal, authenticate
from framefleet.redis_client import get_redis
from framefleet.scheduling import broker

SPEC = JobSpec.model_validate(
    {"input": "file:///x.mp4", "outputs": [{"container": "mp4"}], "hardware": "gpu", "priority": "low"}
)


def principal_of(key: str) -> Principal:
    with session_scope() as session:
        principal = authenticate(session, key)
    assert principal is not None
    return principal


def row(principal: Principal, idempotency_key: str | None = None) -> dict[str, Any]:
    return service.new_job_row(
        principal=principal,
        spec=SPEC,
        document=SPEC.model_dump(mode="json"),
        idempotency_key=idempotency_key,
    )


def new_intake() -> Intake:
    settings = get_settings()
    return Intake(settings.database_url, celery_for(settings))


class HeldIntake(Intake):
    """An intake whose first group waits for `release`, and which records the size of every group."""

    def __init__(self) -> None:
        settings = get_settings()
        super().__init__(settings.database_url, celery_for(settings))
        self.holding = threading.Event()
        self.release = threading.Event()
        self.groups: list[int] = []

    def write_group(self, rows: Sequence[dict[str, Any]]) -> list[Job | Exception]:
        if not self.groups:
            self.holding.set()
            self.release.wait(10)
        self.groups.append(len(rows))
        return super().write_group(rows)


def waiting_messages(job_ids: list[str]) -> dict[str, list[str]]:
    snap = broker.snapshot(get_redis(), delivered_within=0)
    return {job_id: [queue for queue, _ in snap.waiting.get(job_id, [])] for job_id in job_ids}


def test_submissions_waiting_together_are_written_as_one_group(tenant_key: tuple[str, str]) -> None:
    principal = principal_of(tenant_key[1])
    intake = HeldIntake()
    rows = [row(principal) for _ in range(30)]
    first = intake.enqueue(rows[0])
    assert intake.holding.wait(10), "the writer took the first submission"
    rest = [intake.enqueue(r) for r in rows[1:]]
    assert intake.waiting == len(rest)
    intake.release.set()
    jobs = [first.result(10), *(f.result(10) for f in rest)]
    intake.close()

    assert intake.groups == [1, 29]
    assert [job.id for job in jobs] == [r["id"] for r in rows]
    assert all(job.state == "queued" and job.pool == "gpu" for job in jobs)
    ids = [r["id"] for r in rows]
    with session_scope() as session:
        stored = session.scalar(sa.select(sa.func.count()).select_from(Job).where(Job.id.in_(ids)))
        submitted = session.scalars(
            sa.select(JobTransition.job_id).where(JobTransition.job_id.in_(ids))
        ).all()
    assert stored == 30
    assert sorted(submitted) == sorted(ids), "one `submitted` transition per job"
    assert waiting_messages(ids) == {job_id: ["gpu.low"] for job_id in ids}, "published exactly once each"


def test_a_reused_idempotency_key_fails_alone_and_the_rest_of_its_group_lands(
    tenant_key: tuple[str, str],
) -> None:
    principal = principal_of(tenant_key[1])
    first, plain, again = row(principal, "k-1"), row(principal), row(principal, "k-1")
    outcomes = new_intake().write_group([first, plain, again])

    assert isinstance(outcomes[0], Job) and outcomes[0].id == first["id"]
    assert isinstance(outcomes[1], Job) and outcomes[1].id == plain["id"]
    assert isinstance(outcomes[2], IntegrityError)
    with session_scope() as session:
        stored = set(session.scalars(sa.select(Job.id).where(Job.tenant_id == principal.tenant_id)))
    assert stored == {first["id"], plain["id"]}
    assert waiting_messages([first["id"], plain["id"], again["id"]]) == {
        first["id"]: ["gpu.low"],
        plain["id"]: ["gpu.low"],
        again["id"]: [],
    }


def test_racing_requests_with_one_idempotency_key_create_one_job(tenant_key: tuple[str, str]) -> None:
    principal = principal_of(tenant_key[1])
    intake = new_intake()
    futures = [intake.enqueue(row(principal, "same")) for _ in range(8)]
    intake.close()
    created = [f.result() for f in futures if f.exception() is None]
    refused = [f.exception() for f in futures if f.exception() is not None]
    assert len(created) == 1
    assert len(refused) == 7 and all(isinstance(exc, IntegrityError) for exc in refused)


def test_a_closed_intake_takes_submissions_again(tenant_key: tuple[str, str]) -> None:
    principal = principal_of(tenant_key[1])
    intake = new_intake()
    before = intake.enqueue(row(principal)).result(10)
    intake.close()
    after = intake.enqueue(row(principal)).result(10)
    intake.close()
    with session_scope() as session:
        assert session.get(Job, before.id) is not None and session.get(Job, after.id) is not None


def test_a_row_the_database_refuses_fails_its_request(tenant_key: tuple[str, str]) -> None:
    principal = principal_of(tenant_key[1])
    broken = row(principal)
    broken["tenant_id"] = None  # NOT NULL: the whole insert fails
    intake = new_intake()
    with pytest.raises(IntegrityError):
        intake.enqueue(broken).result(10)
    intake.close()

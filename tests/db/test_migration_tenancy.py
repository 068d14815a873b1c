"""Migration 0005 upgrades a wave-1 database (at 0004: tenants, keys, jobs) without losing anything."""

from __future__ import annotations

import uuid

import pytest
import sqlalchemy as sa

from framefleet.db.migrate import downgrade, upgrade
from framefleet.db.session import normalise_url


def _seed_0004(url: str) -> tuple[str, str]:
    """Rows as a 0004 installation has them (plain SQL: today's models describe the new schema)."""
    raw = "ff_" + uuid.uuid4().hex
    job_id = str(uuid.uuid4())
    from framefleet.keys import hash_key

    engine = sa.create_engine(normalise_url(url))
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO tenants (id, name, created_at) VALUES (1, 'newsroom', CURRENT_TIMESTAMP)"
                )
            )
            connection.execute(
                sa.text(
                    "INSERT INTO api_keys (id, tenant_id, prefix, key_hash, role, created_at) VALUES "
                    "(1, 1, :prefix, :hash, 'submitter', CURRENT_TIMESTAMP), "
                    "(2, 1, 'ff_viewer', 'x', 'viewer', CURRENT_TIMESTAMP)"
                ),
                {"prefix": raw[:10], "hash": hash_key(raw)},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO jobs (id, tenant_id, state, priority, hardware, pool, spec, spec_hash,"
                    " attempt, cancel_requested, progress, created_at, updated_at, failures) VALUES (:id, 1,"
                    " 'queued', 'normal', 'cpu', 'cpu', '{}', 'h', 0, false, 0, CURRENT_TIMESTAMP,"
                    " CURRENT_TIMESTAMP, 0)"
                ),
                {"id": job_id},
            )
            connection.execute(
                sa.text(
                    "INSERT INTO job_transitions (job_id, from_state, to_state, at, reason, attempt)"
                    " VALUES (:id, NULL, 'queued', CURRENT_TIMESTAMP, 'submitted', 0)"
                ),
                {"id": job_id},
            )
    finally:
        engine.dispose()
    return raw, job_id


def test_upgrade_from_0004_keeps_tenants_keys_and_jobs(own_database_url: str) -> None:
    from framefleet.db.models import AuditEvent, Job, JobTransition, Tenant
    from framefleet.db.session import session_scope
    from framefleet.keys import authenticate

    upgrade(own_database_url, "0004_output_groups")
    raw, job_id = _seed_0004(own_database_url)

    upgrade(own_database_url)

    with session_scope(own_database_url) as session:
        tenant = session.scalars(sa.select(Tenant)).one()
        assert (tenant.name, tenant.status, tenant.settings) == ("newsroom", "active", {})
        principal = authenticate(session, raw)
        assert principal is not None
        # The old role name is stored as its new one; other roles are untouched.
        assert (principal.tenant, principal.role, principal.tenant_status) == ("newsroom", "member", "active")
        roles = session.execute(sa.text("SELECT id, role FROM api_keys ORDER BY id")).all()
        assert [tuple(r) for r in roles] == [(1, "member"), (2, "viewer")]
        job = session.get(Job, job_id)
        assert job is not None and (job.state, job.pending_reason) == ("queued", None)
        history = session.scalars(sa.select(JobTransition).where(JobTransition.job_id == job_id)).all()
        assert [(t.to_state, t.actor) for t in history] == [("queued", None)]
        assert session.scalars(sa.select(AuditEvent)).all() == []

    # And back: the previous schema, keys under their previous role name.
    downgrade(own_database_url, "0004_output_groups")
    engine = sa.create_engine(normalise_url(own_database_url))
    try:
        with engine.connect() as connection:
            assert (
                connection.execute(sa.text("SELECT role FROM api_keys WHERE id = 1")).scalar_one()
                == "submitter"
            )
            assert "audit_events" not in sa.inspect(connection).get_table_names()
    finally:
        engine.dispose()


def _seed_wave1(url: str, revision: str) -> tuple[str, list[str]]:
    """A wave-1 installation in use (schema at 0001 or 0003): a tenant, its keys, a finished job with its
    output and history, a queued one, and (at 0003) a worker that ran them. Plain SQL in that schema."""
    from framefleet.keys import hash_key

    raw = "ff_" + uuid.uuid4().hex
    done, waiting = str(uuid.uuid4()), str(uuid.uuid4())
    engine = sa.create_engine(normalise_url(url))
    try:
        with engine.begin() as connection:
            run = connection.execute
            run(
                sa.text("INSERT INTO tenants (id, name, created_at) VALUES (1, 'archive', CURRENT_TIMESTAMP)")
            )
            run(
                sa.text(
                    "INSERT INTO api_keys (id, tenant_id, prefix, key_hash, role, created_at, revoked_at)"
                    " VALUES (1, 1, :prefix, :hash, 'submitter', CURRENT_TIMESTAMP, NULL),"
                    " (2, 1, 'ff_old0000', 'x', 'submitter', CURRENT_TIMESTAMP, CURRENT_TIMESTAMP)"
                ),
                {"prefix": raw[:10], "hash": hash_key(raw)},
            )
            for job_id, state, finished in (
                (done, "succeeded", "CURRENT_TIMESTAMP"),
                (waiting, "queued", "NULL"),
            ):
                run(
                    sa.text(
                        "INSERT INTO jobs (id, tenant_id, state, priority, hardware, pool, spec, spec_hash,"
                        " idempotency_key, attempt, cancel_requested, progress, created_at, updated_at,"
                        f" finished_at) VALUES (:id, 1, :state, 'normal', 'cpu', 'cpu', :spec, 'h', :idem, 1,"
                        f" false, 100, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, {finished})"
                    ),
                    {
                        "id": job_id,
                        "state": state,
                        "spec": '{"input": "file:///m/a.mp4"}',
                        "idem": f"i-{state}",
                    },
                )
                run(
                    sa.text(
                        "INSERT INTO job_transitions (job_id, from_state, to_state, at, reason, attempt)"
                        " VALUES (:id, NULL, 'queued', CURRENT_TIMESTAMP, 'submitted', 0)"
                    ),
                    {"id": job_id},
                )
            run(
                sa.text(
                    "INSERT INTO job_outputs (job_id, name, uri, container, size_bytes, created_at)"
                    " VALUES (:id, 'web', 'file:///m/out.mp4', 'mp4', 1234, CURRENT_TIMESTAMP)"
                ),
                {"id": done},
            )
            if revision != "0001":
                run(
                    sa.text(
                        "INSERT INTO workers (id, node, host, pid, pool, capabilities, started_at,"
                        " last_heartbeat, jobs_done) VALUES ('cpu@h:1', 'cpu@h', 'h', 1, 'cpu', '{}',"
                        " CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 1)"
                    )
                )
    finally:
        engine.dispose()
    return raw, [done, waiting]


@pytest.mark.parametrize("revision", ["0001", "0003_scheduling"])
def test_upgrade_from_a_wave1_database_keeps_its_jobs_and_keys(own_database_url: str, revision: str) -> None:
    from framefleet.db.models import ApiKey, Job, JobOutput, JobTransition, Tenant, Worker
    from framefleet.db.session import session_scope
    from framefleet.keys import authenticate

    upgrade(own_database_url, revision)
    raw, (done, waiting) = _seed_wave1(own_database_url, revision)

    upgrade(own_database_url)  # to head, every migration since

    with session_scope(own_database_url) as session:
        tenant = session.scalars(sa.select(Tenant)).one()
        assert (tenant.name, tenant.status) == ("archive", "active")
        principal = authenticate(session, raw)
        assert principal is not None and (principal.tenant, principal.role) == ("archive", "member")
        keys = session.scalars(sa.select(ApiKey).order_by(ApiKey.id)).all()
        assert [(k.id, k.role, k.revoked_at is not None) for k in keys] == [
            (1, "member", False),
            (2, "member", True),
        ]
        assert authenticate(session, "ff_old0000" + "0" * 22) is None  # the revoked one stays refused
        jobs = {job.id: job for job in session.scalars(sa.select(Job))}
        assert {job_id: (j.state, j.idempotency_key) for job_id, j in jobs.items()} == {
            done: ("succeeded", "i-succeeded"),
            waiting: ("queued", "i-queued"),
        }
        assert jobs[waiting].pending_reason is None and jobs[waiting].failures == 0
        assert jobs[done].spec == {"input": "file:///m/a.mp4"}
        outputs = session.scalars(sa.select(JobOutput).where(JobOutput.job_id == done)).all()
        assert [(o.name, o.size_bytes) for o in outputs] == [("web", 1234)]
        history = session.scalars(sa.select(JobTransition.job_id)).all()
        assert sorted(history) == sorted([done, waiting])
        workers = session.scalars(sa.select(Worker)).all()
        assert [w.id for w in workers] == ([] if revision == "0001" else ["cpu@h:1"])

"""Migration 0005 upgrades a wave-1 database (at 0004: tenants, keys, jobs) without losing anything."""

from __future__ import annotations

import uuid

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

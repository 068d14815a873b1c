"""Migration 0021 makes uploads finished before it objects of the stored-bytes ledger, keeps every job's
ledger rows through SQLite's table copy, and its downgrade takes the uploads' bytes off again."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from framefleet.db.migrate import downgrade, upgrade
from framefleet.db.session import normalise_url

BEFORE = "0016_observability"


def _seed(connection: sa.Connection, job_id: str) -> None:
    """Rows as a 0016 installation has them (plain SQL: today's models describe the new schema)."""
    connection.execute(
        sa.text("INSERT INTO tenants (id, name, created_at) VALUES (1, 'm', CURRENT_TIMESTAMP)")
    )
    connection.execute(
        sa.text(
            "INSERT INTO jobs (id, tenant_id, state, priority, hardware, pool, spec, spec_hash, attempt,"
            " cancel_requested, progress, created_at, updated_at, failures) VALUES (:id, 1, 'succeeded',"
            " 'normal', 'cpu', 'cpu', '{}', 'h', 1, false, 1, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP, 0)"
        ),
        {"id": job_id},
    )
    connection.execute(
        sa.text(
            "INSERT INTO stored_objects (tenant_id, job_id, role, uri, size_bytes, created_at)"
            " VALUES (1, :id, 'output', 'file:///o/out.mp4', 100, CURRENT_TIMESTAMP)"
        ),
        {"id": job_id},
    )
    connection.execute(
        sa.text(
            "INSERT INTO tenant_storage (tenant_id, stored_bytes, objects, updated_at)"
            " VALUES (1, 100, 1, CURRENT_TIMESTAMP)"
        )
    )
    for number, state in enumerate(("complete", "complete", "open")):
        connection.execute(
            sa.text(
                "INSERT INTO uploads (id, tenant_id, length, filename, state, uri, created_at, updated_at,"
                " expires_at) VALUES (:id, 1, 50, 'f', :state, :uri, CURRENT_TIMESTAMP, CURRENT_TIMESTAMP,"
                " CURRENT_TIMESTAMP)"
            ),
            {
                "id": f"{number:032x}",
                "state": state,
                "uri": f"file:///u/{number}" if state == "complete" else None,
            },
        )


def _counter(connection: sa.Connection) -> tuple[int, int]:
    row = connection.execute(sa.text("SELECT stored_bytes, objects FROM tenant_storage")).one()
    return int(row[0]), int(row[1])


def test_finished_uploads_join_the_ledger_and_leave_it_on_downgrade(own_database_url: str) -> None:
    job_id = str(uuid.uuid4())
    upgrade(own_database_url, BEFORE)
    engine = sa.create_engine(normalise_url(own_database_url))
    try:
        with engine.begin() as connection:
            _seed(connection, job_id)
        upgrade(own_database_url)
        with engine.begin() as connection:
            assert _counter(connection) == (200, 3)
            objects = connection.execute(
                sa.text("SELECT id, job_id, role, uri, size_bytes FROM stored_objects ORDER BY id")
            ).all()
            assert [tuple(o[1:]) for o in objects] == [
                (job_id, "output", "file:///o/out.mp4", 100),
                (None, "upload", "file:///u/0", 50),
                (None, "upload", "file:///u/1", 50),
            ]
            references = connection.execute(sa.text("SELECT object_id FROM uploads ORDER BY id")).scalars()
            assert list(references) == [objects[1][0], objects[2][0], None]
        downgrade(own_database_url, BEFORE)
        with engine.begin() as connection:
            assert _counter(connection) == (100, 1)
            assert connection.execute(sa.text("SELECT COUNT(*) FROM stored_objects")).scalar() == 1
    finally:
        engine.dispose()

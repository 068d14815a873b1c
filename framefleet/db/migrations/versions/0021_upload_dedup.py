"""upload dedup: finished uploads are objects of the stored-bytes ledger, one per content of a tenant

Revision ID: 0021_upload_dedup
Revises: 0016_observability
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0021_upload_dedup"
down_revision = "0016_observability"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # stored_objects has no children yet, so SQLite's batch copy (to drop NOT NULL) deletes nothing.
    with op.batch_alter_table("stored_objects") as batch:
        batch.alter_column("job_id", existing_type=sa.String(length=36), nullable=True)
        batch.add_column(sa.Column("sha256", sa.String(length=64), nullable=True))
        batch.create_index("ix_stored_objects_tenant_sha256", ["tenant_id", "sha256"])
    # Nothing references uploads either: a batch, so that SQLite gets the foreign key too.
    with op.batch_alter_table("uploads") as batch:
        batch.add_column(
            sa.Column("object_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True)
        )
        batch.create_foreign_key("fk_uploads_object_id", "stored_objects", ["object_id"], ["id"])
        batch.create_index("ix_uploads_object_id", ["object_id"])
    # Uploads finished before this revision become ledger objects (without a hash: never deduplicated
    # against) and their bytes count as stored.
    op.execute(
        "INSERT INTO stored_objects (tenant_id, job_id, role, uri, size_bytes, created_at) "
        "SELECT tenant_id, NULL, 'upload', uri, length, updated_at FROM uploads "
        "WHERE state = 'complete' AND uri IS NOT NULL"
    )
    op.execute(
        "UPDATE uploads SET object_id = (SELECT MIN(s.id) FROM stored_objects s WHERE s.role = 'upload' "
        "AND s.tenant_id = uploads.tenant_id AND s.uri = uploads.uri) WHERE state = 'complete'"
    )
    op.execute(
        "INSERT INTO tenant_storage (tenant_id, stored_bytes, objects, updated_at) "
        "SELECT tenant_id, SUM(length), COUNT(*), CURRENT_TIMESTAMP FROM uploads "
        "WHERE state = 'complete' AND uri IS NOT NULL GROUP BY tenant_id "
        "ON CONFLICT (tenant_id) DO UPDATE SET stored_bytes = tenant_storage.stored_bytes + "
        "excluded.stored_bytes, objects = tenant_storage.objects + excluded.objects"
    )


def downgrade() -> None:
    with op.batch_alter_table("uploads") as batch:
        batch.drop_index("ix_uploads_object_id")
        batch.drop_constraint("fk_uploads_object_id", type_="foreignkey")
        batch.drop_column("object_id")
    # Upload objects leave the ledger, and their bytes the counters (as if never counted).
    live = "FROM stored_objects s WHERE s.tenant_id = tenant_storage.tenant_id AND s.job_id IS NULL "
    live += "AND s.deleted_at IS NULL"
    op.execute(
        "UPDATE tenant_storage SET "
        f"stored_bytes = stored_bytes - COALESCE((SELECT SUM(s.size_bytes) {live}), 0), "
        f"objects = objects - (SELECT COUNT(*) {live})"
    )
    op.execute("DELETE FROM stored_objects WHERE job_id IS NULL")
    with op.batch_alter_table("stored_objects") as batch:
        batch.drop_index("ix_stored_objects_tenant_sha256")
        batch.drop_column("sha256")
        batch.alter_column("job_id", existing_type=sa.String(length=36), nullable=False)

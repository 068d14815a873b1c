"""lifecycle: retention, legal hold, stored-object ledger, stored bytes per tenant, result cache

Revision ID: 0014_lifecycle
Revises: 0011_workflows
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0014_lifecycle"
down_revision = "0011_workflows"
branch_labels = None
depends_on = None

_JOB_COLUMNS: tuple[sa.Column[object], ...] = (
    sa.Column("legal_hold", sa.Boolean(), nullable=False, server_default=sa.false()),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("inputs_expire_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
    sa.Column("input_fingerprint", sa.String(length=80), nullable=True),
    sa.Column("cache_key", sa.String(length=64), nullable=True),
    sa.Column("cached_from", sa.String(length=36), nullable=True),
)


def upgrade() -> None:
    # Plain add_column on jobs: a SQLite batch copy of the table would cascade deletes to its children.
    for column in _JOB_COLUMNS:
        op.add_column("jobs", column)
    op.create_index("ix_jobs_expires_at", "jobs", ["expires_at"])
    op.create_index("ix_jobs_inputs_expire_at", "jobs", ["inputs_expire_at"])
    op.create_index("ix_jobs_tenant_cache_key", "jobs", ["tenant_id", "cache_key"])
    op.create_table(
        "stored_objects",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column(
            "job_id", sa.String(length=36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("role", sa.String(length=8), nullable=False),
        sa.Column("uri", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_stored_objects_job", "stored_objects", ["job_id"])
    op.create_index("ix_stored_objects_tenant_id", "stored_objects", ["tenant_id"])
    op.create_table(
        "tenant_storage",
        sa.Column(
            "tenant_id",
            sa.Integer(),
            sa.ForeignKey("tenants.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("stored_bytes", sa.BigInteger(), nullable=False),
        sa.Column("objects", sa.Integer(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
    )
    # Outputs published before this revision count as stored: their bytes were counted per month.
    op.execute(
        "INSERT INTO tenant_storage (tenant_id, stored_bytes, objects, updated_at) "
        "SELECT tenant_id, SUM(output_bytes), 0, CURRENT_TIMESTAMP FROM tenant_usage GROUP BY tenant_id"
    )


def downgrade() -> None:
    op.drop_table("tenant_storage")
    op.drop_index("ix_stored_objects_tenant_id", table_name="stored_objects")
    op.drop_index("ix_stored_objects_job", table_name="stored_objects")
    op.drop_table("stored_objects")
    op.drop_index("ix_jobs_tenant_cache_key", table_name="jobs")
    op.drop_index("ix_jobs_inputs_expire_at", table_name="jobs")
    op.drop_index("ix_jobs_expires_at", table_name="jobs")
    for column in reversed(_JOB_COLUMNS):
        op.drop_column("jobs", column.name)

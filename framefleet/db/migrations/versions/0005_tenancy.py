"""tenancy: tenant status and settings, key expiry/CIDR/description/usage, audit log, pending reason, actor

Existing tenants stay (as active tenants) and existing keys keep working; keys stored with the old role name
`submitter` are renamed `member` (the same rights).

Plain ADD/DROP COLUMN, never a batch table copy: on SQLite a copy drops and recreates `tenants`, and with
foreign keys on, dropping it would cascade to every key and job of the installation.

Revision ID: 0005_tenancy
Revises: 0004_output_groups
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_tenancy"
down_revision = "0004_output_groups"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column(
        "tenants", sa.Column("status", sa.String(length=16), nullable=False, server_default="active")
    )
    op.add_column("tenants", sa.Column("status_reason", sa.Text(), nullable=True))
    op.add_column("tenants", sa.Column("settings", sa.JSON(), nullable=False, server_default="{}"))
    op.add_column("tenants", sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_keys", sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_keys", sa.Column("description", sa.String(length=255), nullable=True))
    op.add_column("api_keys", sa.Column("allowed_cidrs", sa.JSON(), nullable=True))
    op.add_column("api_keys", sa.Column("created_by", sa.String(length=64), nullable=True))
    op.add_column("api_keys", sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True))
    op.add_column("api_keys", sa.Column("replaces_id", sa.Integer(), nullable=True))
    op.execute(sa.text("UPDATE api_keys SET role = 'member' WHERE role = 'submitter'"))
    op.add_column("jobs", sa.Column("pending_reason", sa.String(length=32), nullable=True))
    op.add_column("job_transitions", sa.Column("actor", sa.String(length=64), nullable=True))
    op.create_table(
        "audit_events",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("actor", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=True),
        sa.Column("key_prefix", sa.String(length=16), nullable=True),
        sa.Column("tenant_id", sa.Integer(), nullable=True),
        sa.Column("tenant", sa.String(length=64), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=True),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("target", sa.String(length=255), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("status", sa.Integer(), nullable=True),
        sa.Column("client_ip", sa.String(length=64), nullable=True),
        sa.Column("request_id", sa.String(length=128), nullable=True),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_index("ix_audit_tenant_id", "audit_events", ["tenant_id", "id"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_audit_tenant_id", table_name="audit_events")
    op.drop_table("audit_events")
    op.drop_column("job_transitions", "actor")
    op.drop_column("jobs", "pending_reason")
    op.execute(sa.text("UPDATE api_keys SET role = 'submitter' WHERE role = 'member'"))
    # The previous schema has no operator: the nearest role that grants no more is viewer.
    op.execute(sa.text("UPDATE api_keys SET role = 'viewer' WHERE role = 'operator'"))
    for column in (
        "replaces_id",
        "last_used_at",
        "created_by",
        "allowed_cidrs",
        "description",
        "expires_at",
    ):
        op.drop_column("api_keys", column)
    for column in ("updated_at", "settings", "status_reason", "status"):
        op.drop_column("tenants", column)

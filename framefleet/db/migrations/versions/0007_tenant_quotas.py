"""tenant quotas: an index to count a tenant's jobs by state (bounded quota checks), usage per month

Revision ID: 0007_tenant_quotas
Revises: 0006_webhooks
Create Date: 2026-12-20
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_tenant_quotas"
down_revision = "0006_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_tenant_state", "jobs", ["tenant_id", "state"])
    op.create_table(
        "tenant_usage",
        sa.Column(
            "tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("period", sa.String(7), primary_key=True),
        sa.Column("jobs_succeeded", sa.Integer(), nullable=False),
        sa.Column("media_seconds", sa.Float(), nullable=False),
        sa.Column("output_bytes", sa.BigInteger(), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("tenant_usage")
    op.drop_index("ix_jobs_tenant_state", table_name="jobs")

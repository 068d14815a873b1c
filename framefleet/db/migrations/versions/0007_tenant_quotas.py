"""tenant quotas: an index to count a tenant's jobs by state (bounded quota checks)

Revision ID: 0007_tenant_quotas
Revises: 0006_webhooks
Create Date: 2026-12-20
"""

from alembic import op

revision = "0007_tenant_quotas"
down_revision = "0006_webhooks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_jobs_tenant_state", "jobs", ["tenant_id", "state"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_state", table_name="jobs")

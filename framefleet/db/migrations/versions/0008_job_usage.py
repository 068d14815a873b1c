"""job usage: what a job's attempts consumed and cost (observability/cost.py)

Revision ID: 0008_job_usage
Revises: 0007_tenant_quotas
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_job_usage"
down_revision = "0007_tenant_quotas"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("usage", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("usage")

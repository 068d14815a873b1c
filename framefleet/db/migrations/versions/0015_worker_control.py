"""worker control: cordoned and draining worker nodes (scheduling/control.py), and the indexes behind the
pools view's recent endings and arrivals per pool (scheduling/pools.py)

Revision ID: 0015_worker_control
Revises: 0011_workflows
Create Date: 2027-01-10
"""

import sqlalchemy as sa
from alembic import op

revision = "0015_worker_control"
down_revision = "0014_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "worker_controls",
        sa.Column("node", sa.String(length=255), primary_key=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column("actor", sa.String(length=64), nullable=True),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
    )
    # Plain index creation on jobs (no table copy on SQLite).
    op.create_index("ix_jobs_pool_finished", "jobs", ["pool", "finished_at"])
    op.create_index("ix_jobs_pool_created", "jobs", ["pool", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_pool_created", table_name="jobs")
    op.drop_index("ix_jobs_pool_finished", table_name="jobs")
    op.drop_table("worker_controls")

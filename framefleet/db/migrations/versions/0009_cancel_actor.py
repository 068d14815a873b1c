"""who asked to cancel a running job, for the history row the worker writes when it stops it

Revision ID: 0009_cancel_actor
Revises: 0008_job_usage
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_cancel_actor"
down_revision = "0008_job_usage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN: on SQLite a batch table copy of `jobs` would cascade-delete its history rows.
    op.add_column("jobs", sa.Column("cancel_requested_by", sa.String(80), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("cancel_requested_by")

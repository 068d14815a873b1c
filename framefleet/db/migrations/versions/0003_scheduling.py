"""scheduling: workers table, retry/aging/limit columns on jobs

Revision ID: 0003_scheduling
Revises: 0001
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_scheduling"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workers",
        sa.Column("id", sa.String(length=255), nullable=False),
        sa.Column("node", sa.String(length=255), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("pool", sa.String(length=8), nullable=False),
        sa.Column("capabilities", sa.JSON(), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_heartbeat", sa.DateTime(timezone=True), nullable=False),
        sa.Column("stopped_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("current_job", sa.String(length=36), nullable=True),
        sa.Column("current_attempt", sa.Integer(), nullable=True),
        sa.Column("jobs_done", sa.Integer(), server_default="0", nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.create_index("ix_workers_last_heartbeat", ["last_heartbeat"], unique=False)

    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("queued_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("effective_priority", sa.String(length=16), nullable=True))
        batch_op.add_column(sa.Column("failures", sa.Integer(), server_default="0", nullable=False))
        batch_op.add_column(sa.Column("retry_at", sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column("max_run_seconds", sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column("run_limit_seconds", sa.Double(), nullable=True))
        batch_op.add_column(sa.Column("avoid_workers", sa.JSON(), nullable=True))
        batch_op.create_index("ix_jobs_state_retry_at", ["state", "retry_at"], unique=False)
    # Jobs already waiting count their wait from their last change.
    op.execute("UPDATE jobs SET queued_at = updated_at WHERE state = 'queued'")


def downgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_index("ix_jobs_state_retry_at")
        batch_op.drop_column("avoid_workers")
        batch_op.drop_column("run_limit_seconds")
        batch_op.drop_column("max_run_seconds")
        batch_op.drop_column("retry_at")
        batch_op.drop_column("failures")
        batch_op.drop_column("effective_priority")
        batch_op.drop_column("queued_at")
    with op.batch_alter_table("workers", schema=None) as batch_op:
        batch_op.drop_index("ix_workers_last_heartbeat")
    op.drop_table("workers")

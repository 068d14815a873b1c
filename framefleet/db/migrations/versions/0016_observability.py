"""observability: the trace context a job keeps (observability/tracing.py), the SLO summary's index

Revision ID: 0016_observability
Revises: 0011_workflows
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0016_observability"
down_revision = "0019_chunks"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # A plain ADD COLUMN: a batch copy of `jobs` on SQLite would cascade deletes to its children.
    op.add_column("jobs", sa.Column("trace_context", sa.String(64), nullable=True))
    op.create_index("ix_jobs_priority_started", "jobs", ["priority", "started_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_priority_started", table_name="jobs")
    op.drop_column("jobs", "trace_context")  # SQLite 3.35+ drops a column in place, without a copy

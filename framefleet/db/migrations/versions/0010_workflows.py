"""workflows: job dependencies (workflows/dependencies.py)

Revision ID: 0010_workflows
Revises: 0008_job_usage
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_workflows"
down_revision = "0008_job_usage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_dependencies",
        sa.Column(
            "job_id", sa.String(length=36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("parent_id", sa.String(length=36), nullable=False),
        sa.Column("condition", sa.String(length=16), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "parent_id"),
    )
    op.create_index("ix_job_dependencies_parent", "job_dependencies", ["parent_id"])


def downgrade() -> None:
    op.drop_index("ix_job_dependencies_parent", table_name="job_dependencies")
    op.drop_table("job_dependencies")

"""workflow runs: a named DAG of steps submitted as one unit (workflows/runs.py)

Revision ID: 0012_workflow_runs
Revises: 0011_workflows
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0012_workflow_runs"
down_revision = "0015_worker_control"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "workflows",
        sa.Column("id", sa.String(length=36), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("steps", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_workflows_tenant_created", "workflows", ["tenant_id", "created_at", "id"])
    # Plain added columns: a batch copy of `jobs` on SQLite would cascade deletes to its children.
    op.add_column("jobs", sa.Column("workflow_id", sa.String(length=36), nullable=True))
    op.add_column("jobs", sa.Column("workflow_step", sa.String(length=64), nullable=True))
    op.create_index("ix_jobs_workflow_id", "jobs", ["workflow_id"])


def downgrade() -> None:
    op.drop_index("ix_jobs_workflow_id", table_name="jobs")
    # Plain drops (SQLite 3.35+ has DROP COLUMN): a batch copy would cascade deletes here too.
    op.drop_column("jobs", "workflow_step")
    op.drop_column("jobs", "workflow_id")
    op.drop_index("ix_workflows_tenant_created", table_name="workflows")
    op.drop_table("workflows")

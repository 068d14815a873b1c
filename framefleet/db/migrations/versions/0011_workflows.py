"""workflows: job dependencies and cron schedules (workflows/dependencies.py, workflows/schedules.py)

Revision ID: 0011_workflows
Revises: 0010_presets_templates
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0011_workflows"
down_revision = "0010_presets_templates"
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
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("cron", sa.String(length=128), nullable=False),
        sa.Column("timezone", sa.String(length=64), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("catch_up", sa.String(length=8), nullable=False),
        sa.Column("next_run_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_fire_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_schedules_tenant_name"),
    )
    op.create_index("ix_schedules_due", "schedules", ["enabled", "next_run_at"])
    op.create_table(
        "schedule_fires",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
        sa.Column(
            "schedule_id", sa.Integer(), sa.ForeignKey("schedules.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("fire_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("job_id", sa.String(length=36), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.UniqueConstraint("schedule_id", "fire_at", name="uq_schedule_fires_time"),
    )
    op.create_index("ix_schedule_fires_schedule", "schedule_fires", ["schedule_id", "id"])


def downgrade() -> None:
    op.drop_index("ix_schedule_fires_schedule", table_name="schedule_fires")
    op.drop_table("schedule_fires")
    op.drop_index("ix_schedules_due", table_name="schedules")
    op.drop_table("schedules")
    op.drop_index("ix_job_dependencies_parent", table_name="job_dependencies")
    op.drop_table("job_dependencies")

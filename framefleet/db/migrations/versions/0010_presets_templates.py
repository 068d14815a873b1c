"""presets and templates: a tenant's output presets and versioned job templates (framefleet/workflows/)

Revision ID: 0010_presets_templates
Revises: 0009_cancel_actor
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0010_presets_templates"
down_revision = "0009_cancel_actor"
branch_labels = None
depends_on = None

_WHEN = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "output_presets",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("description", sa.String(255), nullable=True),
        sa.Column("output", sa.JSON(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.Column("updated_at", _WHEN, nullable=False),
        sa.UniqueConstraint("tenant_id", "name", name="uq_output_presets_tenant_name"),
    )
    op.create_table(
        "job_templates",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("description", sa.String(255), nullable=True),
        sa.Column("parameters", sa.JSON(), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("created_at", _WHEN, nullable=False),
        sa.UniqueConstraint("tenant_id", "name", "version", name="uq_job_templates_tenant_name_version"),
    )


def downgrade() -> None:
    op.drop_table("job_templates")
    op.drop_table("output_presets")

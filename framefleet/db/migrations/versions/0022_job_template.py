"""job template: a job records the template (name, version) it was made from

Revision ID: 0022_job_template
Revises: 0021_upload_dedup
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0022_job_template"
down_revision = "0021_upload_dedup"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Nullable: jobs submitted as a spec, and every job from before this revision, name no template.
    op.add_column("jobs", sa.Column("template_name", sa.String(length=128), nullable=True))
    op.add_column("jobs", sa.Column("template_version", sa.Integer(), nullable=True))
    op.create_index("ix_jobs_tenant_template", "jobs", ["tenant_id", "template_name"])


def downgrade() -> None:
    op.drop_index("ix_jobs_tenant_template", table_name="jobs")
    op.drop_column("jobs", "template_version")
    op.drop_column("jobs", "template_name")

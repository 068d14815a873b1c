"""storage io: resumable uploads (framefleet/storage/uploads.py)

Revision ID: 0013_storage_io
Revises: 0011_workflows
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0013_storage_io"
down_revision = "0011_workflows"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "uploads",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("tenant_id", sa.Integer(), sa.ForeignKey("tenants.id", ondelete="CASCADE"), nullable=False),
        sa.Column("length", sa.BigInteger(), nullable=False),
        sa.Column("filename", sa.String(length=200), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("uri", sa.Text(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_uploads_tenant_id", "uploads", ["tenant_id"])
    op.create_index("ix_uploads_state_expires", "uploads", ["state", "expires_at"])


def downgrade() -> None:
    op.drop_index("ix_uploads_state_expires", table_name="uploads")
    op.drop_index("ix_uploads_tenant_id", table_name="uploads")
    op.drop_table("uploads")

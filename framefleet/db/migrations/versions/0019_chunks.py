"""chunks: split-and-stitch chunk and join rows (worker/chunked.py, scheduling/chunks.py)

Revision ID: 0019_chunks
Revises: 0014_lifecycle
Create Date: 2026-12-01
"""

import sqlalchemy as sa
from alembic import op

revision = "0019_chunks"
down_revision = "0013_storage_io"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_chunks",
        sa.Column(
            "job_id", sa.String(length=36), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("job_attempt", sa.Integer(), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=8), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("worker", sa.String(length=255), nullable=True),
        sa.Column("start_frame", sa.Integer(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("seek", sa.Float(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("pending", sa.Integer(), nullable=False, server_default="0"),
        sa.Column("progress", sa.Float(), nullable=False, server_default="0"),
        sa.Column("details", sa.JSON(), nullable=True),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("job_id", "job_attempt", "index"),
    )
    op.create_index("ix_job_chunks_state", "job_chunks", ["state"])


def downgrade() -> None:
    op.drop_index("ix_job_chunks_state", table_name="job_chunks")
    op.drop_table("job_chunks")

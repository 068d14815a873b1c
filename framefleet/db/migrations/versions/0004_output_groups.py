"""output groups: kind, group and details on job outputs; longer names for group members

Revision ID: 0004_output_groups
Revises: 0003_scheduling
Create Date: 2026-11-22
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_output_groups"
down_revision = "0003_scheduling"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("job_outputs", schema=None) as batch_op:
        batch_op.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="file"))
        batch_op.add_column(sa.Column("group_name", sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column("details", sa.JSON(), nullable=True))
        batch_op.alter_column(
            "name", existing_type=sa.String(length=64), type_=sa.String(length=160), existing_nullable=False
        )


def downgrade() -> None:
    with op.batch_alter_table("job_outputs", schema=None) as batch_op:
        batch_op.alter_column(
            "name", existing_type=sa.String(length=160), type_=sa.String(length=64), existing_nullable=False
        )
        batch_op.drop_column("details")
        batch_op.drop_column("group_name")
        batch_op.drop_column("kind")

"""claim lease: who holds a running analysis, and when it last said it is alive

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26 12:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(length=96), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("analyses") as batch:
        batch.drop_column("heartbeat_at")
        batch.drop_column("claimed_by")

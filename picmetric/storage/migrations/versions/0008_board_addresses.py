"""board photos keep the client address that sent them: the per-phone limits count by device and by address, so a
new browser tab (or a cleared cookie) does not start them afresh

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 00:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("board_photos") as table:
        table.add_column(sa.Column("address", sa.String(length=64), nullable=True))
    op.create_index("ix_board_photos_address", "board_photos", ["address"])


def downgrade() -> None:
    op.drop_index("ix_board_photos_address", "board_photos")
    with op.batch_alter_table("board_photos") as table:
        table.drop_column("address")

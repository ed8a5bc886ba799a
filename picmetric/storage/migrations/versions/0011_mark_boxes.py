"""a mark on an object keeps its box and class (the one marked false or duplicate, or the one drawn around what was
missed), so a board's marks can become ground truth

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07 05:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("board_marks") as table:
        table.add_column(sa.Column("box", sa.JSON(), nullable=True))
        table.add_column(sa.Column("category", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("board_marks") as table:
        table.drop_column("category")
        table.drop_column("box")

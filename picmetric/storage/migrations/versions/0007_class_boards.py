"""class boards: a teacher's session, the photos students' phones send to it, and their marks on the results

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 15:05:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "boards",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("title", sa.String(length=120), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "board_photos",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("board_id", sa.String(length=32), sa.ForeignKey("boards.id", ondelete="CASCADE"), nullable=False),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
        sa.Column("phone", sa.String(length=64), nullable=False),
        sa.Column("hidden", sa.Boolean(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_board_photos_board_id", "board_photos", ["board_id"])
    op.create_index("ix_board_photos_image_id", "board_photos", ["image_id"])
    op.create_index("ix_board_photos_created_at", "board_photos", ["created_at"])
    op.create_table(
        "board_marks",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("photo_id", sa.Integer(), sa.ForeignKey("board_photos.id", ondelete="CASCADE"), nullable=False),
        sa.Column("task", sa.String(length=16), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("what", sa.String(length=120), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_board_marks_photo_id", "board_marks", ["photo_id"])


def downgrade() -> None:
    op.drop_table("board_marks")
    op.drop_table("board_photos")
    op.drop_table("boards")

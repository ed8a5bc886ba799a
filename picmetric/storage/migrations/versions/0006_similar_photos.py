"""similar photos: each image's perceptual hash, and its features per classifier

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29 14:50:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("images") as batch:
        batch.add_column(sa.Column("phash", sa.String(length=16), nullable=True))
    op.create_table(
        "embeddings",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model", sa.String(length=64), nullable=False),
        sa.Column("vector", sa.LargeBinary(), nullable=False),
        sa.UniqueConstraint("image_id", "model", name="uq_embedding_image_model"),
    )
    op.create_index("ix_embeddings_image_id", "embeddings", ["image_id"])


def downgrade() -> None:
    op.drop_table("embeddings")
    with op.batch_alter_table("images") as batch:
        batch.drop_column("phash")

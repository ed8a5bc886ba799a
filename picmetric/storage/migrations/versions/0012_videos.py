"""videos: stored clips, their analyses (chunks analysed as jobs, then stitched) and each chunk's progress; a job
has a kind (photo, or video-chunk with its spec)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 06:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as table:
        table.add_column(sa.Column("kind", sa.String(length=16), nullable=False, server_default="photo"))
        table.add_column(sa.Column("spec", sa.JSON(), nullable=True))
    op.create_table(
        "videos",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sha256", sa.String(length=64), nullable=False, unique=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("container", sa.String(length=32), nullable=False),
        sa.Column("codec", sa.String(length=32), nullable=False),
        sa.Column("width", sa.Integer(), nullable=False),
        sa.Column("height", sa.Integer(), nullable=False),
        sa.Column("fps", sa.Float(), nullable=False),
        sa.Column("frames", sa.Integer(), nullable=False),
        sa.Column("duration_s", sa.Float(), nullable=False),
        sa.Column("rotation", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.Column("original_name", sa.Text(), nullable=True),
        sa.Column("blob_key", sa.String(length=255), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_videos_created_at", "videos", ["created_at"])
    op.create_table(
        "video_analyses",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("video_id", sa.Integer(), sa.ForeignKey("videos.id", ondelete="CASCADE"), nullable=False),
        sa.Column("options_key", sa.String(length=64), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("chunks", sa.Integer(), nullable=False),
        sa.Column("batch_id", sa.String(length=32), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("result_key", sa.String(length=255), nullable=True),
        sa.Column("clip_key", sa.String(length=255), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("video_id", "options_key"),
    )
    op.create_index("ix_video_analyses_video_id", "video_analyses", ["video_id"])
    op.create_table(
        "video_chunks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("analysis_id", sa.Integer(), sa.ForeignKey("video_analyses.id", ondelete="CASCADE"), nullable=False),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("frames_done", sa.Integer(), nullable=False),
        sa.Column("frames_total", sa.Integer(), nullable=False),
        sa.Column("result_key", sa.String(length=255), nullable=True),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("analysis_id", "index"),
    )
    op.create_index("ix_video_chunks_analysis_id", "video_chunks", ["analysis_id"])


def downgrade() -> None:
    op.drop_table("video_chunks")
    op.drop_table("video_analyses")
    op.drop_table("videos")
    with op.batch_alter_table("jobs") as table:
        table.drop_column("spec")
        table.drop_column("kind")

"""job leases and shared log lines: a job nobody vouches for is sent again; workers' log lines reach the System page

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29 11:40:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True))
        batch.create_index("ix_jobs_heartbeat_at", ["heartbeat_at"])
    op.create_table(
        "log_lines",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("process", sa.String(length=96), nullable=False),
        sa.Column("line", sa.Text(), nullable=False),
    )
    op.create_index("ix_log_lines_created_at", "log_lines", ["created_at"])


def downgrade() -> None:
    op.drop_table("log_lines")
    with op.batch_alter_table("jobs") as batch:
        batch.drop_index("ix_jobs_heartbeat_at")
        batch.drop_column("heartbeat_at")

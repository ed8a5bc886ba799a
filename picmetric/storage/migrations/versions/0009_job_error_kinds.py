"""a failed job records the kind of its error (the error class's name), not an HTTP status: the API's one table maps
kinds to statuses; rows from before keep the status they were recorded with

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07 01:00:00
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs") as table:
        table.add_column(sa.Column("error_kind", sa.String(length=40), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as table:
        table.drop_column("error_kind")

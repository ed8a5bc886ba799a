"""job endings notified: on PostgreSQL a trigger sends NOTIFY picmetric_jobs, <job id> when a job ends (done or
failed) or is deleted, so a process waiting for jobs is told instead of asking (SQLite has no notifications)

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-07 07:00:00
"""

from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute(
        """
        CREATE FUNCTION picmetric_job_ended() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('picmetric_jobs', CASE WHEN TG_OP = 'DELETE' THEN OLD.id ELSE NEW.id END);
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER job_ended AFTER UPDATE OF state ON jobs FOR EACH ROW
        WHEN (NEW.state IN ('done', 'failed') AND OLD.state IS DISTINCT FROM NEW.state)
        EXECUTE FUNCTION picmetric_job_ended()
        """
    )
    op.execute("CREATE TRIGGER job_deleted AFTER DELETE ON jobs FOR EACH ROW EXECUTE FUNCTION picmetric_job_ended()")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS job_deleted ON jobs")
    op.execute("DROP TRIGGER IF EXISTS job_ended ON jobs")
    op.execute("DROP FUNCTION IF EXISTS picmetric_job_ended()")

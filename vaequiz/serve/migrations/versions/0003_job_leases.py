"""Grading jobs get a lease (who claimed a job and until when) and a publish time (for the
Celery broker), so a restarting server re-queues only the jobs whose grader stopped renewing.

Revision ID: 0003_job_leases
Revises: 0002_results_per_grader
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_job_leases"
down_revision = "0002_results_per_grader"
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.add_column(sa.Column("claimed_by", sa.String(200)))
        batch.add_column(sa.Column("lease_until", TIME))
        batch.add_column(sa.Column("published_at", TIME))


def downgrade() -> None:
    with op.batch_alter_table("jobs") as batch:
        batch.drop_column("published_at")
        batch.drop_column("lease_until")
        batch.drop_column("claimed_by")

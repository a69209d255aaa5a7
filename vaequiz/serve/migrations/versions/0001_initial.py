"""The first schema: people, sign-in, attempts, answer revisions, grading jobs and results.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TIME = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("role", sa.String(20), nullable=False),
        sa.Column("password_hash", sa.String(300)),
        sa.Column("created_at", TIME, nullable=False),
    )
    op.create_table(
        "sign_in_tokens",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("quiz", sa.String(200)),
        sa.Column("expires_at", TIME, nullable=False),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("expires_at", TIME, nullable=False),
    )
    op.create_table(
        "settings",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )
    op.create_table(
        "attempts",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("quiz", sa.String(200), nullable=False),
        sa.Column("mode", sa.String(20), nullable=False),
        sa.Column("started_at", TIME, nullable=False),
        sa.Column("deadline", TIME),
        sa.Column("submitted_at", TIME),
        sa.UniqueConstraint("user_id", "quiz", "mode", name="uq_attempt_per_student"),
    )
    op.create_table(
        "revisions",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("attempt_id", sa.Integer, sa.ForeignKey("attempts.id"), nullable=False, index=True),
        sa.Column("question", sa.String(200), nullable=False),
        sa.Column("value", sa.Text, nullable=False),
        sa.Column("saved_at", TIME, nullable=False),
    )
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("revision_id", sa.Integer, sa.ForeignKey("revisions.id"), nullable=False, unique=True),
        sa.Column("attempt_id", sa.Integer, sa.ForeignKey("attempts.id"), nullable=False, index=True),
        sa.Column("state", sa.String(20), nullable=False, index=True),
        sa.Column("tries", sa.Integer, nullable=False, server_default="0"),
        sa.Column("enqueued_at", TIME, nullable=False),
        sa.Column("started_at", TIME),
        sa.Column("finished_at", TIME),
    )
    op.create_table(
        "results",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("revision_id", sa.Integer, sa.ForeignKey("revisions.id"), nullable=False, unique=True),
        sa.Column("attempt_id", sa.Integer, sa.ForeignKey("attempts.id"), nullable=False, index=True),
        sa.Column("question", sa.String(200), nullable=False),
        sa.Column("item", sa.Text, nullable=False),
        sa.Column("graded_at", TIME, nullable=False),
    )
    op.create_table(
        "releases",
        sa.Column("quiz", sa.String(200), primary_key=True),
        sa.Column("released_at", TIME, nullable=False),
    )


def downgrade() -> None:
    for table in ("releases", "results", "jobs", "revisions", "attempts", "settings", "sessions",
                  "sign_in_tokens", "users"):
        op.drop_table(table)

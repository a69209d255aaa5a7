"""Results per revision *and grader*: a regrade (the question or the grader changed) adds a new
result row for the same answer revision instead of being refused; the newest one counts.

Revision ID: 0002_results_per_grader
Revises: 0001
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0002_results_per_grader"
down_revision = "0001"
branch_labels = None
depends_on = None

NAMES = {"uq": "uq_%(table_name)s_%(column_0_name)s"}
"""Names for SQLite's unnamed constraints, so the batch copy can drop the old one."""


def _old_unique(bind: sa.engine.Connection) -> str:
    if bind.dialect.name == "sqlite":
        return "uq_results_revision_id"
    for constraint in sa.inspect(bind).get_unique_constraints("results"):
        if constraint["column_names"] == ["revision_id"]:
            return constraint["name"]
    raise RuntimeError("results has no unique constraint on revision_id to replace")


def upgrade() -> None:
    bind = op.get_bind()
    old = _old_unique(bind)
    with op.batch_alter_table("results", naming_convention=NAMES) as batch:
        batch.add_column(sa.Column("grader", sa.String(200), nullable=False, server_default=""))
        batch.drop_constraint(old, type_="unique")
        batch.create_unique_constraint("uq_result_per_grader", ["revision_id", "grader"])
    table = sa.table("results", sa.column("id", sa.Integer), sa.column("item", sa.Text), sa.column("grader", sa.String))
    for row in bind.execute(sa.select(table.c.id, table.c.item)).all():
        item = json.loads(row.item)
        key = f"{item.get('fingerprint') or ''}/{item.get('grader_version') or ''}"
        bind.execute(sa.update(table).where(table.c.id == row.id).values(grader=key))


def downgrade() -> None:
    with op.batch_alter_table("results") as batch:
        batch.drop_constraint("uq_result_per_grader", type_="unique")
        batch.drop_column("grader")
        batch.create_unique_constraint("uq_results_revision_id", ["revision_id"])

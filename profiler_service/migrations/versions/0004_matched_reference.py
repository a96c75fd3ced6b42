"""Matched references: each measurement and network names the drift reference it was timed against, so a
quieter nominal of one reference rescales only the figures scaled to it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

# Before this revision every figure was timed against the one reference of that time (its name is data
# here, not an import: a migration must not change with the code).
_ONLY_REFERENCE = "proxyless-mobile@160/3x3_MBConv3/warm3"


def upgrade() -> None:
    for table in ("measurements", "networks"):
        op.add_column(table, sa.Column("reference", sa.String(100), nullable=True))
        op.execute(sa.text(f"UPDATE {table} SET reference = :name WHERE ref_ms IS NOT NULL")
                   .bindparams(name=_ONLY_REFERENCE))


def downgrade() -> None:
    for table in ("networks", "measurements"):
        with op.batch_alter_table(table) as b:
            b.drop_column("reference")

"""Quiet nominal: the drift reference's nominal is versioned and says how it was estimated; each
measurement and network says which nominal its figures are scaled to.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("drift_references") as b:
        b.add_column(sa.Column("version", sa.Integer(), nullable=False, server_default="1"))
        b.add_column(sa.Column("source", sa.String(20), nullable=False, server_default="first-observation"))
        b.add_column(sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE drift_references SET updated_at = created_at")
    with op.batch_alter_table("drift_references") as b:
        b.alter_column("updated_at", existing_type=sa.DateTime(timezone=True), nullable=False)
        b.alter_column("version", server_default=None, existing_type=sa.Integer(), existing_nullable=False)
        b.alter_column("source", server_default=None, existing_type=sa.String(20), existing_nullable=False)
    op.add_column("measurements", sa.Column("nominal_ms", sa.Float(), nullable=True))
    op.add_column("networks", sa.Column("nominal_ms", sa.Float(), nullable=True))
    # Rows scaled before this revision used their configuration's (then only) nominal.
    for table in ("measurements", "networks"):
        op.execute(
            f"UPDATE {table} SET nominal_ms = (SELECT d.nominal_ms FROM drift_references d JOIN tables t "
            f"ON d.device_id = t.device_id AND d.backend = t.backend AND d.threads = t.threads "
            f"WHERE t.id = {table}.table_id ORDER BY d.created_at LIMIT 1) WHERE ref_ms IS NOT NULL")


def downgrade() -> None:
    with op.batch_alter_table("networks") as b:
        b.drop_column("nominal_ms")
    with op.batch_alter_table("measurements") as b:
        b.drop_column("nominal_ms")
    with op.batch_alter_table("drift_references") as b:
        b.drop_column("updated_at")
        b.drop_column("source")
        b.drop_column("version")

"""Drift reference: each measurement keeps the reference latency timed with it; each device/backend/threads
keeps its nominal reference latency, to which results are scaled.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("measurements", sa.Column("ref_ms", sa.Float(), nullable=True))
    op.add_column("networks", sa.Column("ref_ms", sa.Float(), nullable=True))
    op.create_table(
        "drift_references",
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("backend", sa.String(50), primary_key=True),
        sa.Column("threads", sa.Integer(), primary_key=True),
        sa.Column("reference", sa.String(100), primary_key=True),
        sa.Column("nominal_ms", sa.Float(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("drift_references")
    with op.batch_alter_table("networks") as b:
        b.drop_column("ref_ms")
    with op.batch_alter_table("measurements") as b:
        b.drop_column("ref_ms")

"""Nominal bursts: every burst of a drift reference alone is kept with the nominal it left, so the
device's clock can be audited (how far its quiet speed moves between bursts).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "nominal_bursts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.Integer(), sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False),
        sa.Column("backend", sa.String(50), nullable=False),
        sa.Column("threads", sa.Integer(), nullable=False),
        sa.Column("reference", sa.String(100), nullable=False),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("burst_ms", sa.Float(), nullable=False),
        sa.Column("pooled_ms", sa.Float(), nullable=False),
        sa.Column("nominal_ms", sa.Float(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("others_cores", sa.Float(), nullable=True),
    )
    op.create_index("ix_nominal_bursts_config", "nominal_bursts",
                    ["device_id", "backend", "threads", "reference", "at"])


def downgrade() -> None:
    op.drop_index("ix_nominal_bursts_config", table_name="nominal_bursts")
    op.drop_table("nominal_bursts")

"""Add `low_balance_alerts`: each tenant's low-balance threshold and where to notify it.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "low_balance_alerts",
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("threshold", sa.BigInteger(), nullable=False),
        sa.Column("callback_url", sa.Text(), nullable=False),
        sa.Column("armed", sa.Boolean(), nullable=False),
        sa.Column(
            "updated_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.PrimaryKeyConstraint("tenant_id", name=op.f("pk_low_balance_alerts")),
        sa.CheckConstraint("threshold > 0", name=op.f("ck_low_balance_alerts_threshold_positive")),
    )


def downgrade() -> None:
    op.drop_table("low_balance_alerts")

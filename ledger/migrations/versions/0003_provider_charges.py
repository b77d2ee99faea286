"""Book what providers charge: `provider_charge` transactions and the `provider_charges` table.

- transactions: kind `provider_charge`, posted by the platform tenant with the job's id.
- provider_charges: one row per job segment with the quoted and the charged price and cost.

The platform's `provider_cost/<provider>` and `provider_payable/<provider>` accounts are created
when a provider's first charge is booked, so this migration creates none.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

KINDS_BEFORE = "kind IN ('grant', 'hold', 'capture', 'release', 'refund', 'expire')"
KINDS_AFTER = (
    "kind IN ('grant', 'hold', 'capture', 'release', 'refund', 'expire', 'provider_charge')"
)


def upgrade() -> None:
    with op.batch_alter_table("transactions") as batch:
        batch.drop_constraint(op.f("ck_transactions_kind_known"), type_="check")
        batch.create_check_constraint(op.f("ck_transactions_kind_known"), KINDS_AFTER)

    op.create_table(
        "provider_charges",
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("attempt", sa.Integer(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("provider", sa.Text(), nullable=False),
        sa.Column("instance_id", sa.Text(), nullable=False),
        sa.Column("billable_seconds", sa.BigInteger(), nullable=False),
        sa.Column("quoted_price_per_hour", sa.BigInteger(), nullable=False),
        sa.Column("charged_price_per_hour", sa.BigInteger(), nullable=False),
        sa.Column("quoted_cost", sa.BigInteger(), nullable=False),
        sa.Column("charged_cost", sa.BigInteger(), nullable=False),
        sa.Column("reported", sa.Boolean(), nullable=False),
        sa.Column("transaction_id", sa.BigInteger(), nullable=True),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.PrimaryKeyConstraint("job_id", "attempt", name=op.f("pk_provider_charges")),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_provider_charges_transaction_id_transactions"),
        ),
        sa.UniqueConstraint("transaction_id", name=op.f("uq_provider_charges_transaction_id")),
        sa.CheckConstraint(
            "billable_seconds >= 0 AND quoted_price_per_hour >= 0 AND charged_price_per_hour >= 0"
            " AND quoted_cost >= 0 AND charged_cost >= 0",
            name=op.f("ck_provider_charges_amounts_not_negative"),
        ),
        sa.CheckConstraint(
            "(charged_cost = 0) = (transaction_id IS NULL)",
            name=op.f("ck_provider_charges_transaction_iff_charged"),
        ),
    )
    op.create_index(op.f("ix_provider_charges_provider"), "provider_charges", ["provider"])
    _check_sqlite_foreign_keys()


def downgrade() -> None:
    # A provider_charge transaction has no place in the 0002 schema, so a downgrade works only
    # on a ledger that has none.
    op.drop_index(op.f("ix_provider_charges_provider"), table_name="provider_charges")
    op.drop_table("provider_charges")
    with op.batch_alter_table("transactions") as batch:
        batch.drop_constraint(op.f("ck_transactions_kind_known"), type_="check")
        batch.create_check_constraint(op.f("ck_transactions_kind_known"), KINDS_BEFORE)
    _check_sqlite_foreign_keys()


def _check_sqlite_foreign_keys() -> None:
    # SQLite rebuilds `transactions` with foreign keys off, so check them once at the end.
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    violations = bind.exec_driver_sql("PRAGMA foreign_key_check").all()
    if violations:
        raise RuntimeError(f"foreign key violations after the migration: {violations}")

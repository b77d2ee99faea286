"""Create the ledger tables: accounts, transactions, postings and holds.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite assigns ids automatically only to a column declared exactly INTEGER PRIMARY KEY.
ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "accounts",
        sa.Column("id", ID_TYPE, primary_key=True),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("balance", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("allow_negative", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_accounts")),
        sa.UniqueConstraint("tenant_id", "name", name=op.f("uq_accounts_tenant_id_name")),
        sa.CheckConstraint(
            "allow_negative OR balance >= 0", name=op.f("ck_accounts_balance_not_negative")
        ),
    )

    op.create_table(
        "transactions",
        sa.Column("id", ID_TYPE, primary_key=True),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("job_id", sa.Text(), nullable=True),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False, server_default=""),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_transactions")),
        sa.UniqueConstraint("tenant_id", "key", name=op.f("uq_transactions_tenant_id_key")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_transactions_amount_positive")),
        sa.CheckConstraint(
            "kind IN ('grant', 'hold', 'capture', 'release')",
            name=op.f("ck_transactions_kind_known"),
        ),
        sa.CheckConstraint(
            "kind = 'grant' OR job_id IS NOT NULL", name=op.f("ck_transactions_job_id_present")
        ),
    )
    op.create_index(op.f("ix_transactions_job_id"), "transactions", ["job_id"])

    op.create_table(
        "postings",
        sa.Column("id", ID_TYPE, primary_key=True),
        sa.Column("transaction_id", sa.BigInteger(), nullable=False),
        sa.Column("account_id", sa.BigInteger(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("balance_after", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_postings")),
        sa.ForeignKeyConstraint(
            ["transaction_id"],
            ["transactions.id"],
            name=op.f("fk_postings_transaction_id_transactions"),
        ),
        sa.ForeignKeyConstraint(
            ["account_id"], ["accounts.id"], name=op.f("fk_postings_account_id_accounts")
        ),
        sa.UniqueConstraint(
            "transaction_id", "account_id", name=op.f("uq_postings_transaction_id_account_id")
        ),
        sa.CheckConstraint("amount <> 0", name=op.f("ck_postings_amount_not_zero")),
    )
    op.create_index(op.f("ix_postings_account_id_id"), "postings", ["account_id", "id"])

    op.create_table(
        "holds",
        sa.Column("job_id", sa.Text(), nullable=False),
        sa.Column("tenant_id", sa.Text(), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("captured", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column("released", sa.BigInteger(), nullable=False, server_default="0"),
        sa.Column(
            "created_at",
            sa.DateTime(timezone=True),
            nullable=False,
            server_default=sa.func.now(),
        ),
        sa.PrimaryKeyConstraint("job_id", name=op.f("pk_holds")),
        sa.CheckConstraint("amount > 0", name=op.f("ck_holds_amount_positive")),
        sa.CheckConstraint(
            "captured >= 0 AND released >= 0", name=op.f("ck_holds_settled_not_negative")
        ),
        sa.CheckConstraint(
            "captured + released <= amount", name=op.f("ck_holds_settled_within_amount")
        ),
    )
    op.create_index(op.f("ix_holds_tenant_id"), "holds", ["tenant_id"])


def downgrade() -> None:
    op.drop_table("holds")
    op.drop_table("postings")
    op.drop_table("transactions")
    op.drop_table("accounts")

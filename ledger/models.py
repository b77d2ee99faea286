"""Tables of the double-entry ledger and the invariants that keep it balanced.

Amounts are integers in micro-credits (1 credit = 1_000_000). Every movement of money is a
row in `transactions` with exactly two rows in `postings`: one debit and one credit of the
same size. Nothing posted is ever edited; a correction is a new transaction.

Invariants, and where each is enforced:

- The postings of a transaction sum to zero. `ledger.operations` writes every transaction
  through one function, which posts -amount on the source account and +amount on the
  destination in the same database transaction. A unique constraint allows at most one
  posting per account in a transaction. The database does not sum postings itself, because
  a cross-row check needs a trigger that SQLite and PostgreSQL would spell differently.
- An account's `balance` equals the sum of its postings, and each posting's `balance_after`
  is the balance right after it. `ledger.operations` updates the balance and writes the
  posting in one database transaction, with the new balance taken from the UPDATE itself.
- An account that does not allow a negative balance never goes below zero. The UPDATE that
  debits it carries the guard `allow_negative OR balance >= amount`, so concurrent debits
  cannot overdraw it; the CHECK constraint `ck_accounts_balance_not_negative` is the backstop.
- A transaction key is posted once per tenant: UNIQUE (tenant_id, key).
- Amounts of transactions and holds are positive, postings are non-zero (CHECK constraints).
- A job's hold is captured and released at most once in total: CHECK
  `captured + released <= amount`, and the UPDATE that captures or releases carries the same
  guard.

Tenant accounts are `available` (spendable credits) and `held` (budgets reserved for jobs),
neither of which may go negative. The platform's own accounts belong to the reserved tenant id
`PLATFORM_TENANT_ID`: `funding`, the source of granted credits, which goes negative by the
total granted, and `revenue`, which collects captured costs.
"""

import sqlalchemy as sa

PLATFORM_TENANT_ID = "platform"
"""Tenant id of the platform's own accounts, which no customer tenant may use."""

AVAILABLE = "available"
HELD = "held"
FUNDING = "funding"
REVENUE = "revenue"

TENANT_ACCOUNTS = (AVAILABLE, HELD)
PLATFORM_ACCOUNTS = (FUNDING, REVENUE)

ACCOUNTS_ALLOWING_NEGATIVE = frozenset({FUNDING})
"""Account names whose balance may go below zero."""

GRANT = "grant"
HOLD = "hold"
CAPTURE = "capture"
RELEASE = "release"

TRANSACTION_KINDS = (GRANT, HOLD, CAPTURE, RELEASE)

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("tenant_id", sa.Text(), nullable=False),
    sa.Column("name", sa.Text(), nullable=False),
    sa.Column("balance", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("allow_negative", sa.Boolean(), nullable=False),
    sa.UniqueConstraint("tenant_id", "name"),
    sa.CheckConstraint("allow_negative OR balance >= 0", name="balance_not_negative"),
)

transactions = sa.Table(
    "transactions",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column("tenant_id", sa.Text(), nullable=False),
    sa.Column("key", sa.Text(), nullable=False),
    sa.Column("kind", sa.Text(), nullable=False),
    sa.Column("job_id", sa.Text(), nullable=True, index=True),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("reason", sa.Text(), nullable=False, server_default=""),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.UniqueConstraint("tenant_id", "key"),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
    sa.CheckConstraint(
        "kind IN ('grant', 'hold', 'capture', 'release')", name="kind_known"
    ),
    sa.CheckConstraint("kind = 'grant' OR job_id IS NOT NULL", name="job_id_present"),
)

postings = sa.Table(
    "postings",
    metadata,
    sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True),
    sa.Column(
        "transaction_id",
        sa.BigInteger(),
        sa.ForeignKey("transactions.id"),
        nullable=False,
    ),
    sa.Column("account_id", sa.BigInteger(), sa.ForeignKey("accounts.id"), nullable=False),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("balance_after", sa.BigInteger(), nullable=False),
    sa.UniqueConstraint("transaction_id", "account_id"),
    sa.Index(None, "account_id", "id"),
    sa.CheckConstraint("amount <> 0", name="amount_not_zero"),
)

holds = sa.Table(
    "holds",
    metadata,
    sa.Column("job_id", sa.Text(), primary_key=True),
    sa.Column("tenant_id", sa.Text(), nullable=False, index=True),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("captured", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("released", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
    sa.CheckConstraint("captured >= 0 AND released >= 0", name="settled_not_negative"),
    sa.CheckConstraint("captured + released <= amount", name="settled_within_amount"),
)

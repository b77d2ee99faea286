"""Tables of the double-entry ledger and the invariants that keep it balanced.

Amounts are integers in micro-credits (1 credit = 1_000_000). Every movement of money is a
row in `transactions` with exactly two rows in `postings`: one debit and one credit of the
same size. Nothing posted is ever edited; a correction is a new transaction.

Invariants, and where each is enforced (`ledger.verify.verify_ledger` checks all of them on a
live database, whatever wrote it):

- The postings of a transaction sum to zero. On PostgreSQL the deferred constraint trigger
  `tr_postings_balanced` sums each touched transaction's postings at commit and rejects the
  commit otherwise. SQLite has no deferred triggers, so there the posting code alone keeps it:
  each transfer writes -amount and +amount in one database transaction. UNIQUE
  (transaction_id, account_id) allows at most one posting per account in a transaction.
- An account's `balance` equals the sum of its postings, and each posting's `balance_after`
  is the balance right after it. The posting code writes both from the same UPDATE ...
  RETURNING, in one database transaction; no constraint can check a running sum.
- An account that does not allow a negative balance never goes below zero: the CHECK
  constraint `ck_accounts_balance_not_negative`. The posting code checks the balance under the
  tenant lock (below) first, so a request that would overdraw is rejected with an error
  instead of failing on the constraint.
- A transaction key is posted once per tenant: UNIQUE (tenant_id, key).
- Amounts of transactions, holds, lots and lot parts are positive, postings non-zero (CHECK).
- A job's hold is captured and released at most once in total: CHECK
  `captured + released <= amount` on `holds`.
- A job is refunded at most what was captured from it: CHECK `refunded <= captured` on `holds`.
- Lots: the sum of a tenant's `lots.remaining` equals its available balance, each lot's
  `remaining + expired <= amount` (CHECK), each hold's parts (`hold_lots`) add up to what the
  hold drew and captured, and an expired lot keeps nothing: the posting code keeps these in
  the same database transaction as the postings; `verify_ledger` checks them.

Every operation of a tenant first locks the tenant's `available` account row (on PostgreSQL
with SELECT ... FOR UPDATE; SQLite's BEGIN IMMEDIATE locks the whole database). That
serializes the tenant's transactions, so its checks read a balance that cannot change before
the write, and its transaction ids increase in the order the transactions commit.

Tenant accounts are `available` (spendable credits) and `held` (budgets reserved for jobs),
neither of which may go negative. The platform's own accounts belong to the reserved tenant id
`PLATFORM_TENANT_ID`: `funding`, the source of granted credits, which goes negative by the
total granted; `revenue`, which collects captured costs and pays refunds; and `expired`, which
collects the credits of expired grants. All balances together sum to zero.

What providers charge the platform is booked apart from what tenants pay. A `provider_charge`
transaction of the platform tenant moves a job segment's provider cost from the platform's
`provider_cost/<provider>` account, which goes negative by the total cost like `funding`, to
its `provider_payable/<provider>` account, the amount owed to that provider. Each one has a row
in `provider_charges`, which keeps the quoted figures beside the charged ones for the variance
report (`ledger.provider_costs`).

A lot is one portion of a tenant's available credits with its own expiry: each grant and each
refund creates one. `ledger.expiry` explains how holds draw on lots and how lots expire.
"""

import sqlalchemy as sa

PLATFORM_TENANT_ID = "platform"
"""Tenant id of the platform's own accounts, which no customer tenant may use."""

AVAILABLE = "available"
HELD = "held"
FUNDING = "funding"
REVENUE = "revenue"
EXPIRED = "expired"

TENANT_ACCOUNTS = (AVAILABLE, HELD)
PLATFORM_ACCOUNTS = (FUNDING, REVENUE, EXPIRED)

PROVIDER_COST_PREFIX = "provider_cost/"
"""Prefix of the platform's per-provider cost accounts, followed by the provider's name."""

PROVIDER_PAYABLE_PREFIX = "provider_payable/"
"""Prefix of the platform's per-provider payable accounts, followed by the provider's name."""

ACCOUNTS_ALLOWING_NEGATIVE = frozenset({FUNDING})
"""Account names whose balance may go below zero; so do the `provider_cost/` accounts."""


def allows_negative(name: str) -> bool:
    """Return whether an account of this name may have a negative balance."""
    return name in ACCOUNTS_ALLOWING_NEGATIVE or name.startswith(PROVIDER_COST_PREFIX)

GRANT = "grant"
HOLD = "hold"
CAPTURE = "capture"
RELEASE = "release"
REFUND = "refund"
EXPIRE = "expire"
PROVIDER_CHARGE = "provider_charge"

TRANSACTION_KINDS = (GRANT, HOLD, CAPTURE, RELEASE, REFUND, EXPIRE, PROVIDER_CHARGE)

# SQLite assigns ids automatically only to a column declared exactly INTEGER PRIMARY KEY.
ID_TYPE = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

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
    sa.Column("id", ID_TYPE, primary_key=True),
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
    sa.Column("id", ID_TYPE, primary_key=True),
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
    # Statements page through a tenant's transactions by id.
    sa.Index(None, "tenant_id", "id"),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
    sa.CheckConstraint(
        "kind IN ('grant', 'hold', 'capture', 'release', 'refund', 'expire', 'provider_charge')",
        name="kind_known",
    ),
    sa.CheckConstraint("kind IN ('grant', 'expire') OR job_id IS NOT NULL", name="job_id_present"),
)

postings = sa.Table(
    "postings",
    metadata,
    sa.Column("id", ID_TYPE, primary_key=True),
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
    sa.Column("refunded", sa.BigInteger(), nullable=False, server_default="0"),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
    sa.CheckConstraint("captured >= 0 AND released >= 0", name="settled_not_negative"),
    sa.CheckConstraint("captured + released <= amount", name="settled_within_amount"),
    sa.CheckConstraint("refunded >= 0 AND refunded <= captured", name="refunded_within_captured"),
)

lots = sa.Table(
    "lots",
    metadata,
    sa.Column("id", ID_TYPE, primary_key=True),
    sa.Column("tenant_id", sa.Text(), nullable=False, index=True),
    # The grant or refund that created the lot. NULL only for the one lot per tenant that
    # migration 0002 made from the balances that existed before lots did.
    sa.Column(
        "transaction_id",
        sa.BigInteger(),
        sa.ForeignKey("transactions.id"),
        nullable=True,
        unique=True,
    ),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("remaining", sa.BigInteger(), nullable=False),
    sa.Column("expired", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True, index=True),
    sa.Column("expired_at", sa.DateTime(timezone=True), nullable=True),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
    sa.CheckConstraint("remaining >= 0 AND expired >= 0", name="parts_not_negative"),
    sa.CheckConstraint("remaining + expired <= amount", name="parts_within_amount"),
)
"""Lots: portions of a tenant's available credits, each with its own expiry.

`amount` is what the grant or refund brought in. `remaining` is the part that is in the
available balance now, neither held nor spent nor expired. `expired` is the total that expire
transactions took from the lot. `expires_at` is NULL for credits that never expire;
`expired_at` is set when `expire_grants` expires the lot, after which `remaining` stays 0.
"""

hold_lots = sa.Table(
    "hold_lots",
    metadata,
    sa.Column("job_id", sa.Text(), sa.ForeignKey("holds.job_id"), primary_key=True),
    sa.Column("lot_id", sa.BigInteger(), sa.ForeignKey("lots.id"), primary_key=True),
    sa.Column("amount", sa.BigInteger(), nullable=False),
    sa.Column("captured", sa.BigInteger(), nullable=False, server_default="0"),
    sa.Column("released", sa.BigInteger(), nullable=False, server_default="0"),
    sa.CheckConstraint("amount > 0", name="amount_positive"),
    sa.CheckConstraint("captured >= 0 AND released >= 0", name="settled_not_negative"),
    sa.CheckConstraint("captured + released <= amount", name="settled_within_amount"),
)
"""The parts of a hold: how much it drew from each lot, and how much of that it captured or
released. A release returns each part's credits to the lot they came from."""

provider_charges = sa.Table(
    "provider_charges",
    metadata,
    sa.Column("job_id", sa.Text(), primary_key=True),
    sa.Column("attempt", sa.Integer(), primary_key=True),
    sa.Column("tenant_id", sa.Text(), nullable=False),
    sa.Column("provider", sa.Text(), nullable=False, index=True),
    sa.Column("instance_id", sa.Text(), nullable=False),
    sa.Column("billable_seconds", sa.BigInteger(), nullable=False),
    sa.Column("quoted_price_per_hour", sa.BigInteger(), nullable=False),
    sa.Column("charged_price_per_hour", sa.BigInteger(), nullable=False),
    sa.Column("quoted_cost", sa.BigInteger(), nullable=False),
    sa.Column("charged_cost", sa.BigInteger(), nullable=False),
    sa.Column("reported", sa.Boolean(), nullable=False),
    # The provider_charge transaction; NULL when the charged cost is zero, because a
    # transaction moves a positive amount.
    sa.Column(
        "transaction_id",
        sa.BigInteger(),
        sa.ForeignKey("transactions.id"),
        nullable=True,
        unique=True,
    ),
    sa.Column(
        "created_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.CheckConstraint(
        "billable_seconds >= 0 AND quoted_price_per_hour >= 0 AND charged_price_per_hour >= 0"
        " AND quoted_cost >= 0 AND charged_cost >= 0",
        name="amounts_not_negative",
    ),
    sa.CheckConstraint(
        "(charged_cost = 0) = (transaction_id IS NULL)", name="transaction_iff_charged"
    ),
)
"""A provider's charge for one segment of a job (one attempt's instance), in micro-credits.

`quoted_*` is the offer the job was placed on, which is also what the tenant pays for the
segment. `charged_*` is what the provider reports charging, or the quoted figures when the
provider reports no price (`reported` is false then). The charged cost is booked by the
`transaction_id` transaction.
"""

low_balance_alerts = sa.Table(
    "low_balance_alerts",
    metadata,
    sa.Column("tenant_id", sa.Text(), primary_key=True),
    sa.Column("threshold", sa.BigInteger(), nullable=False),
    sa.Column("callback_url", sa.Text(), nullable=False),
    sa.Column("armed", sa.Boolean(), nullable=False),
    sa.Column(
        "updated_at", sa.DateTime(timezone=True), nullable=False, server_default=sa.func.now()
    ),
    sa.CheckConstraint("threshold > 0", name="threshold_positive"),
)
"""A tenant's low-balance alert: notify `callback_url` when available credits fall below
`threshold` micro-credits. `armed` is true while the balance is at or above the threshold, so
each fall below it notifies once (`ledger.alerts`)."""

"""An audit of the whole ledger: every invariant of `ledger.models`, recomputed from the rows.

`verify_ledger` trusts nothing that the posting code maintains. It recomputes balances from
postings, the held balance from the holds, the available balance from the lots, and the
platform accounts from what they collect. It reports each difference with the account, hold,
lot or transaction it concerns. It reads one consistent snapshot, so it can run while
operations post.

`cac ledger verify` prints the report and exits with status 1 when it is not ok.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ledger.db import run_with_reconnect
from ledger.models import (
    AVAILABLE,
    EXPIRED,
    FUNDING,
    GRANT,
    HELD,
    PLATFORM_TENANT_ID,
    PROVIDER_CHARGE,
    PROVIDER_COST_PREFIX,
    PROVIDER_PAYABLE_PREFIX,
    REVENUE,
    accounts,
    hold_lots,
    holds,
    lots,
    postings,
    provider_charges,
    transactions,
)


@dataclass(frozen=True)
class Mismatch:
    """One value that differs from what the rows imply. Amounts are in micro-credits."""

    subject: str
    """Owner of the value, such as "account acme/available" or "hold of job j-1"."""

    quantity: str
    """Name of the compared quantity, such as "balance" or "captured + released"."""

    actual: int
    """Value found in the ledger."""

    expected: int
    """Value recomputed from the rows it must agree with."""

    @property
    def difference(self) -> int:
        """`actual - expected`."""
        return self.actual - self.expected

    def __str__(self) -> str:
        return (
            f"{self.subject}: {self.quantity} is {self.actual}, expected {self.expected}"
            f" (difference {self.difference:+d})"
        )


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one invariant check."""

    name: str
    """The invariant that the check asserts, as a sentence."""

    checked: int
    """Number of rows (accounts, postings, holds, ...) the check examined."""

    unit: str
    """Kind of row that `checked` counts, such as "accounts"."""

    mismatches: list[Mismatch] = field(default_factory=list)
    """Every violation found; empty when the check passed."""

    @property
    def ok(self) -> bool:
        """True when the check found no mismatch."""
        return not self.mismatches


@dataclass(frozen=True)
class VerifyReport:
    """The result of `verify_ledger`: one `CheckResult` per invariant."""

    checks: list[CheckResult]
    """Results in the order the checks ran."""

    @property
    def ok(self) -> bool:
        """True when every check passed."""
        return all(check.ok for check in self.checks)

    @property
    def mismatches(self) -> list[Mismatch]:
        """Every mismatch of every check."""
        return [mismatch for check in self.checks for mismatch in check.mismatches]

    def lines(self) -> list[str]:
        """Render the report as lines of text: one per check, then one per mismatch."""
        lines = []
        for check in self.checks:
            status = "ok  " if check.ok else "FAIL"
            lines.append(f"{status} {check.name} ({check.checked} {check.unit})")
            lines.extend(f"       {mismatch}" for mismatch in check.mismatches)
        failed = sum(1 for check in self.checks if not check.ok)
        if failed:
            lines.append(
                f"ledger inconsistent: {failed} of {len(self.checks)} checks failed,"
                f" {len(self.mismatches)} mismatches"
            )
        else:
            lines.append(f"ledger consistent: all {len(self.checks)} checks passed")
        return lines

    def __str__(self) -> str:
        return "\n".join(self.lines())


def verify_ledger(engine: Engine) -> VerifyReport:
    """Check every invariant of the ledger against its rows and report every violation.

    On PostgreSQL the checks read one REPEATABLE READ snapshot; on SQLite the transaction
    holds the database lock. Either way, concurrent postings do not make a consistent ledger
    look inconsistent.

    Args:
        engine: Ledger database engine.

    Returns:
        The report; `report.ok` is False when any check found a mismatch.
    """

    def run_checks() -> VerifyReport:
        with engine.connect() as connection:
            if connection.dialect.name == "postgresql":
                connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                return VerifyReport(checks=[check(connection) for check in CHECKS])

    return run_with_reconnect(engine, run_checks)


def _account_label(row: sa.Row) -> str:
    return f"account {row.tenant_id}/{row.name}"


def _sum(column: sa.ColumnElement) -> sa.ColumnElement[int]:
    # PostgreSQL sums BIGINT into NUMERIC, which psycopg returns as a Decimal.
    return sa.cast(sa.func.coalesce(sa.func.sum(column), 0), sa.BigInteger())


def _check_account_balances(connection: Connection) -> CheckResult:
    posted = (
        sa.select(postings.c.account_id, _sum(postings.c.amount).label("total"))
        .group_by(postings.c.account_id)
        .subquery()
    )
    rows = connection.execute(
        sa.select(
            accounts.c.tenant_id,
            accounts.c.name,
            accounts.c.balance,
            sa.func.coalesce(posted.c.total, 0).label("total"),
        ).outerjoin(posted, posted.c.account_id == accounts.c.id)
    ).all()
    return CheckResult(
        name="each account's balance equals the sum of its postings",
        checked=len(rows),
        unit="accounts",
        mismatches=[
            Mismatch(_account_label(row), "balance", row.balance, row.total)
            for row in rows
            if row.balance != row.total
        ],
    )


def _check_balance_after_chain(connection: Connection) -> CheckResult:
    previous = sa.func.lag(postings.c.balance_after, 1, 0).over(
        partition_by=postings.c.account_id, order_by=postings.c.id
    )
    chain = sa.select(
        postings.c.id,
        postings.c.account_id,
        postings.c.amount,
        postings.c.balance_after,
        previous.label("previous_balance"),
    ).subquery()
    expected = chain.c.previous_balance + chain.c.amount
    count = connection.execute(sa.select(sa.func.count()).select_from(postings)).scalar_one()
    rows = connection.execute(
        sa.select(
            chain.c.id,
            chain.c.balance_after,
            expected.label("expected"),
            accounts.c.tenant_id,
            accounts.c.name,
        )
        .join(accounts, accounts.c.id == chain.c.account_id)
        .where(chain.c.balance_after != expected)
        .order_by(chain.c.id)
    ).all()
    return CheckResult(
        name="each posting's balance_after is the previous one plus its amount",
        checked=count,
        unit="postings",
        mismatches=[
            Mismatch(
                f"posting {row.id} of {_account_label(row)}",
                "balance_after",
                row.balance_after,
                row.expected,
            )
            for row in rows
        ],
    )


def _transaction_totals(connection: Connection) -> list[sa.Row]:
    credited = sa.case((postings.c.amount > 0, postings.c.amount), else_=0)
    return connection.execute(
        sa.select(
            transactions.c.id,
            transactions.c.tenant_id,
            transactions.c.kind,
            transactions.c.amount,
            _sum(postings.c.amount).label("total"),
            _sum(credited).label("credited"),
            sa.func.count(postings.c.id).label("posting_count"),
        )
        .outerjoin(postings, postings.c.transaction_id == transactions.c.id)
        .group_by(
            transactions.c.id, transactions.c.tenant_id, transactions.c.kind, transactions.c.amount
        )
        .order_by(transactions.c.id)
    ).all()


def _transaction_label(row: sa.Row) -> str:
    return f"transaction {row.id} ({row.kind} of tenant {row.tenant_id})"


def _check_transactions_balanced(connection: Connection) -> CheckResult:
    rows = _transaction_totals(connection)
    return CheckResult(
        name="each transaction's postings sum to zero",
        checked=len(rows),
        unit="transactions",
        mismatches=[
            Mismatch(_transaction_label(row), "sum of postings", row.total, 0)
            for row in rows
            if row.total != 0
        ],
    )


def _check_transactions_move_amount(connection: Connection) -> CheckResult:
    rows = _transaction_totals(connection)
    mismatches = []
    for row in rows:
        if row.posting_count != 2:
            mismatches.append(
                Mismatch(_transaction_label(row), "number of postings", row.posting_count, 2)
            )
        if row.credited != row.amount:
            mismatches.append(
                Mismatch(_transaction_label(row), "amount credited", row.credited, row.amount)
            )
    return CheckResult(
        name="each transaction debits one account and credits another by its amount",
        checked=len(rows),
        unit="transactions",
        mismatches=mismatches,
    )


def _check_no_overdraft(connection: Connection) -> CheckResult:
    rows = connection.execute(
        sa.select(accounts.c.tenant_id, accounts.c.name, accounts.c.balance).where(
            sa.not_(accounts.c.allow_negative)
        )
    ).all()
    return CheckResult(
        name="no account that disallows a negative balance is below zero",
        checked=len(rows),
        unit="accounts",
        mismatches=[
            Mismatch(_account_label(row), "balance (minimum 0)", row.balance, 0)
            for row in rows
            if row.balance < 0
        ],
    )


def _hold_label(row: sa.Row) -> str:
    return f"hold of job {row.job_id} (tenant {row.tenant_id})"


def _check_holds_settled_within_amount(connection: Connection) -> CheckResult:
    rows = connection.execute(sa.select(holds)).all()
    return CheckResult(
        name="each hold is captured and released at most once in total",
        checked=len(rows),
        unit="holds",
        mismatches=[
            Mismatch(
                _hold_label(row),
                "captured + released (maximum the amount)",
                row.captured + row.released,
                row.amount,
            )
            for row in rows
            if row.captured + row.released > row.amount or row.captured < 0 or row.released < 0
        ],
    )


def _check_refunds_within_captured(connection: Connection) -> CheckResult:
    rows = connection.execute(sa.select(holds)).all()
    return CheckResult(
        name="each job is refunded at most what was captured from it",
        checked=len(rows),
        unit="holds",
        mismatches=[
            Mismatch(
                _hold_label(row), "refunded (maximum the captured)", row.refunded, row.captured
            )
            for row in rows
            if row.refunded > row.captured or row.refunded < 0
        ],
    )


def _tenant_account_against(
    connection: Connection, name: str, per_tenant: sa.Subquery
) -> tuple[int, list[Mismatch]]:
    """Compare each tenant's account `name` with `per_tenant` (tenant_id, total), both ways."""
    tenant_accounts = connection.execute(
        sa.select(accounts.c.tenant_id, accounts.c.balance).where(
            accounts.c.name == name, accounts.c.tenant_id != PLATFORM_TENANT_ID
        )
    ).all()
    totals = {row.tenant_id: row.total for row in connection.execute(sa.select(per_tenant))}
    balances = {row.tenant_id: row.balance for row in tenant_accounts}

    mismatches = []
    for tenant_id in sorted(balances.keys() | totals.keys()):
        balance = balances.get(tenant_id, 0)
        total = totals.get(tenant_id, 0)
        if balance != total:
            mismatches.append(Mismatch(f"account {tenant_id}/{name}", "balance", balance, total))
    return len(balances), mismatches


def _check_held_matches_holds(connection: Connection) -> CheckResult:
    unsettled = (
        sa.select(
            holds.c.tenant_id,
            _sum(holds.c.amount - holds.c.captured - holds.c.released).label("total"),
        )
        .group_by(holds.c.tenant_id)
        .subquery()
    )
    checked, mismatches = _tenant_account_against(connection, HELD, unsettled)
    return CheckResult(
        name="each tenant's held balance equals what its holds have left",
        checked=checked,
        unit="tenants",
        mismatches=mismatches,
    )


def _check_available_matches_lots(connection: Connection) -> CheckResult:
    remaining = (
        sa.select(lots.c.tenant_id, _sum(lots.c.remaining).label("total"))
        .group_by(lots.c.tenant_id)
        .subquery()
    )
    checked, mismatches = _tenant_account_against(connection, AVAILABLE, remaining)
    return CheckResult(
        name="each tenant's available balance equals the credits remaining in its lots",
        checked=checked,
        unit="tenants",
        mismatches=mismatches,
    )


def _check_lots_accounted(connection: Connection) -> CheckResult:
    drawn = (
        sa.select(
            hold_lots.c.lot_id,
            _sum(hold_lots.c.amount - hold_lots.c.released).label("kept"),
        )
        .group_by(hold_lots.c.lot_id)
        .subquery()
    )
    rows = connection.execute(
        sa.select(
            lots.c.id,
            lots.c.tenant_id,
            lots.c.transaction_id,
            lots.c.amount,
            lots.c.remaining,
            lots.c.expired,
            lots.c.expired_at,
            sa.func.coalesce(drawn.c.kept, 0).label("kept"),
        )
        .outerjoin(drawn, drawn.c.lot_id == lots.c.id)
        .order_by(lots.c.id)
    ).all()

    mismatches = []
    for row in rows:
        label = f"lot {row.id} (transaction {row.transaction_id}, tenant {row.tenant_id})"
        accounted = row.remaining + row.expired + row.kept
        if accounted != row.amount:
            mismatches.append(
                Mismatch(label, "remaining + expired + held or spent", accounted, row.amount)
            )
        if row.expired_at is not None and row.remaining != 0:
            mismatches.append(Mismatch(label, "remaining after expiry", row.remaining, 0))
    return CheckResult(
        name="each lot's credits are remaining, expired, held or spent, and expired lots"
        " keep nothing",
        checked=len(rows),
        unit="lots",
        mismatches=mismatches,
    )


def _check_hold_parts(connection: Connection) -> CheckResult:
    parts = (
        sa.select(
            hold_lots.c.job_id,
            _sum(hold_lots.c.amount - hold_lots.c.released).label("kept"),
            _sum(hold_lots.c.captured).label("captured"),
        )
        .group_by(hold_lots.c.job_id)
        .subquery()
    )
    rows = connection.execute(
        sa.select(
            holds.c.job_id,
            holds.c.tenant_id,
            holds.c.amount,
            holds.c.captured,
            holds.c.released,
            sa.func.coalesce(parts.c.kept, 0).label("parts_kept"),
            sa.func.coalesce(parts.c.captured, 0).label("parts_captured"),
        )
        .outerjoin(parts, parts.c.job_id == holds.c.job_id)
        .order_by(holds.c.job_id)
    ).all()

    mismatches = []
    for row in rows:
        if row.parts_kept != row.amount - row.released:
            mismatches.append(
                Mismatch(
                    _hold_label(row),
                    "amount drawn from lots and not released",
                    row.parts_kept,
                    row.amount - row.released,
                )
            )
        if row.parts_captured != row.captured:
            mismatches.append(
                Mismatch(_hold_label(row), "captured from lots", row.parts_captured, row.captured)
            )
    return CheckResult(
        name="each hold's parts add up to what it drew, released and captured",
        checked=len(rows),
        unit="holds",
        mismatches=mismatches,
    )


def _check_platform_accounts(connection: Connection) -> CheckResult:
    balances = {
        row.name: row.balance
        for row in connection.execute(
            sa.select(accounts.c.name, accounts.c.balance).where(
                accounts.c.tenant_id == PLATFORM_TENANT_ID
            )
        )
    }
    granted = connection.execute(
        sa.select(_sum(transactions.c.amount)).where(transactions.c.kind == GRANT)
    ).scalar_one()
    kept_revenue = connection.execute(
        sa.select(_sum(holds.c.captured - holds.c.refunded))
    ).scalar_one()
    expired = connection.execute(sa.select(_sum(lots.c.expired))).scalar_one()

    expectations = [(FUNDING, -granted), (REVENUE, kept_revenue), (EXPIRED, expired)]
    return CheckResult(
        name="platform funding is minus all grants, revenue is captured minus refunded,"
        " expired is what lots lost to expiry",
        checked=len(expectations),
        unit="accounts",
        mismatches=[
            Mismatch(
                f"account {PLATFORM_TENANT_ID}/{name}", "balance", balances.get(name, 0), expected
            )
            for name, expected in expectations
            if balances.get(name, 0) != expected
        ],
    )


def _check_provider_charges(connection: Connection) -> CheckResult:
    balances = {
        row.name: row.balance
        for row in connection.execute(
            sa.select(accounts.c.name, accounts.c.balance).where(
                accounts.c.tenant_id == PLATFORM_TENANT_ID,
                sa.or_(
                    accounts.c.name.startswith(PROVIDER_COST_PREFIX),
                    accounts.c.name.startswith(PROVIDER_PAYABLE_PREFIX),
                ),
            )
        )
    }
    charged = dict(
        connection.execute(
            sa.select(provider_charges.c.provider, _sum(provider_charges.c.charged_cost)).group_by(
                provider_charges.c.provider
            )
        ).all()
    )
    names = {name.split("/", 1)[1] for name in balances} | set(charged)
    mismatches = []
    for provider in sorted(names):
        total = charged.get(provider, 0)
        for prefix, expected in ((PROVIDER_COST_PREFIX, -total), (PROVIDER_PAYABLE_PREFIX, total)):
            actual = balances.get(prefix + provider, 0)
            if actual != expected:
                mismatches.append(
                    Mismatch(
                        f"account {PLATFORM_TENANT_ID}/{prefix}{provider}", "balance", actual, expected
                    )
                )

    # Each booked charge has its transaction, and each provider_charge transaction its charge.
    unmatched = connection.execute(
        sa.select(
            transactions.c.id,
            transactions.c.amount,
            provider_charges.c.job_id,
            provider_charges.c.attempt,
            provider_charges.c.charged_cost,
        )
        .select_from(
            transactions.outerjoin(
                provider_charges, provider_charges.c.transaction_id == transactions.c.id
            )
        )
        .where(transactions.c.kind == PROVIDER_CHARGE)
        .where(
            sa.or_(
                provider_charges.c.job_id.is_(None),
                provider_charges.c.charged_cost != transactions.c.amount,
                provider_charges.c.job_id != transactions.c.job_id,
            )
        )
    ).all()
    for row in unmatched:
        mismatches.append(
            Mismatch(
                f"provider_charge transaction {row.id}",
                "amount booked in provider_charges",
                row.amount,
                row.charged_cost if row.charged_cost is not None else 0,
            )
        )
    return CheckResult(
        name="each provider's cost and payable accounts equal minus and plus its booked charges",
        checked=len(names),
        unit="providers",
        mismatches=mismatches,
    )


def _check_total_zero(connection: Connection) -> CheckResult:
    count, total = connection.execute(sa.select(sa.func.count(), _sum(accounts.c.balance))).one()
    mismatches = []
    if total != 0:
        mismatches.append(Mismatch("all accounts", "sum of balances", total, 0))
    return CheckResult(
        name="all balances together sum to zero",
        checked=count,
        unit="accounts",
        mismatches=mismatches,
    )


CHECKS: list[Callable[[Connection], CheckResult]] = [
    _check_account_balances,
    _check_balance_after_chain,
    _check_transactions_balanced,
    _check_transactions_move_amount,
    _check_no_overdraft,
    _check_holds_settled_within_amount,
    _check_refunds_within_captured,
    _check_held_matches_holds,
    _check_available_matches_lots,
    _check_lots_accounted,
    _check_hold_parts,
    _check_platform_accounts,
    _check_provider_charges,
    _check_total_zero,
]
"""The checks that `verify_ledger` runs, in order."""

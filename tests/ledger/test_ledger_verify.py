import pytest
import sqlalchemy as sa

from ledger import (
    capture,
    expire_grants,
    grant,
    hold,
    refund,
    release,
    verify_ledger,
)
from ledger.models import accounts, holds, lots, postings
from ledger.verify import CHECKS, Mismatch
from tests.ledger.test_ledger_expiry import AFTER_ALL, grant_three_lots


def post_history(engine) -> None:
    grant_three_lots(engine)
    hold(engine, tenant_id="acme", job_id="j", amount_micros=60, key="h")
    capture(engine, tenant_id="acme", job_id="j", amount_micros=25, key="c")
    refund(engine, tenant_id="acme", job_id="j", amount_micros=5, key="rf", reason="late")
    grant(engine, tenant_id="globex", amount_micros=10, key="g")


def tamper(engine, statement) -> None:
    """Run a statement as an operator with raw SQL access would, bypassing the triggers."""
    with engine.begin() as connection:
        if connection.dialect.name == "postgresql":
            # Triggers, the deferred balance check among them, do not fire for a replica.
            connection.exec_driver_sql("SET LOCAL session_replication_role = replica")
        connection.execute(statement)


def available_posting_of_first_grant(engine) -> int:
    with engine.connect() as connection:
        return connection.execute(
            sa.select(sa.func.min(postings.c.id))
            .join(accounts, accounts.c.id == postings.c.account_id)
            .where(accounts.c.tenant_id == "acme", accounts.c.name == "available")
        ).scalar_one()


def test_verify_consistent_ledger_passes(any_engine):
    post_history(any_engine)
    expire_grants(any_engine, now=AFTER_ALL)
    release(any_engine, tenant_id="acme", job_id="j", amount_micros=35, key="r")

    report = verify_ledger(any_engine)

    assert report.ok is True
    assert report.mismatches == []
    assert len(report.checks) == len(CHECKS)
    assert report.lines()[-1] == f"ledger consistent: all {len(CHECKS)} checks passed"
    assert (
        report.lines()[0]
        == "ok   each account's balance equals the sum of its postings (7 accounts)"
    )


def test_verify_empty_ledger_passes(any_engine):
    report = verify_ledger(any_engine)

    assert report.ok is True


def test_verify_names_account_of_altered_posting(any_engine):
    post_history(any_engine)
    posting_id = available_posting_of_first_grant(any_engine)

    tamper(
        any_engine,
        sa.update(postings).where(postings.c.id == posting_id).values(amount=postings.c.amount + 7),
    )
    report = verify_ledger(any_engine)

    assert report.ok is False
    assert [str(mismatch) for mismatch in report.mismatches] == [
        "account acme/available: balance is 125, expected 132 (difference -7)",
        (
            f"posting {posting_id} of account acme/available: balance_after is 100,"
            " expected 107 (difference -7)"
        ),
        "transaction 1 (grant of tenant acme): sum of postings is 7, expected 0 (difference +7)",
        (
            "transaction 1 (grant of tenant acme): amount credited is 107, expected 100"
            " (difference +7)"
        ),
    ]
    assert "FAIL each account's balance equals the sum of its postings (6 accounts)" in str(report)
    assert str(report).endswith("ledger inconsistent: 4 of 14 checks failed, 4 mismatches")


def test_verify_names_account_of_altered_balance(any_engine):
    post_history(any_engine)

    tamper(
        any_engine,
        sa.update(accounts)
        .where(accounts.c.tenant_id == "globex", accounts.c.name == "available")
        .values(balance=11),
    )
    report = verify_ledger(any_engine)

    assert report.mismatches == [
        Mismatch("account globex/available", "balance", 11, 10),
        Mismatch("account globex/available", "balance", 11, 10),
        Mismatch("all accounts", "sum of balances", 1, 0),
    ]
    assert [check.name for check in report.checks if not check.ok] == [
        "each account's balance equals the sum of its postings",
        "each tenant's available balance equals the credits remaining in its lots",
        "all balances together sum to zero",
    ]


def test_verify_names_hold_with_altered_capture(any_engine):
    post_history(any_engine)

    tamper(any_engine, sa.update(holds).where(holds.c.job_id == "j").values(captured=20))
    report = verify_ledger(any_engine)

    assert [str(mismatch) for mismatch in report.mismatches] == [
        "account acme/held: balance is 35, expected 40 (difference -5)",
        "hold of job j (tenant acme): captured from lots is 25, expected 20 (difference +5)",
        "account platform/revenue: balance is 20, expected 15 (difference +5)",
    ]


def test_verify_names_lot_with_altered_remaining(any_engine):
    post_history(any_engine)

    tamper(any_engine, sa.update(lots).where(lots.c.transaction_id == 1).values(remaining=99))
    report = verify_ledger(any_engine)

    assert [str(mismatch) for mismatch in report.mismatches] == [
        "account acme/available: balance is 125, expected 124 (difference +1)",
        (
            "lot 1 (transaction 1, tenant acme): remaining + expired + held or spent is 99,"
            " expected 100 (difference -1)"
        ),
    ]


def test_deferred_trigger_rejects_unbalanced_transaction(engine):
    grant(engine, tenant_id="acme", amount_micros=10, key="g")

    with pytest.raises(sa.exc.IntegrityError, match="postings of transaction 1 sum to 3"):
        with engine.begin() as connection:
            connection.execute(
                sa.update(postings)
                .where(postings.c.transaction_id == 1, postings.c.amount > 0)
                .values(amount=postings.c.amount + 3)
            )

    assert verify_ledger(engine).ok is True


def test_deferred_trigger_checks_only_the_sum(engine):
    grant(engine, tenant_id="acme", amount_micros=10, key="g")

    # Both legs change in one transaction, so the check at commit finds a zero sum.
    with engine.begin() as connection:
        connection.execute(
            sa.update(postings)
            .where(postings.c.transaction_id == 1)
            .values(amount=postings.c.amount * 2)
        )

    assert verify_ledger(engine).ok is False

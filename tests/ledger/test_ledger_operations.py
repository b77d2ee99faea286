import pytest
import sqlalchemy as sa

from ledger import (
    DuplicateHold,
    HoldExceeded,
    HoldRecord,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    PlatformBalances,
    TenantBalances,
    UnknownHold,
    capture,
    get_balances,
    get_hold,
    get_platform_balances,
    grant,
    hold,
    release,
)
from ledger.models import accounts, holds, postings, transactions

CREDIT = 1_000_000


def count_rows(engine, table):
    with engine.connect() as connection:
        return connection.execute(sa.select(sa.func.count()).select_from(table)).scalar_one()


def test_settlement_balances_after_each_step(engine, ledger_inconsistencies):
    grant(engine, tenant_id="acme", amount_micros=100 * CREDIT, key="grant-1")
    assert get_balances(engine, "acme") == TenantBalances(
        available_micros=100 * CREDIT, held_micros=0, spent_micros=0
    )
    assert get_platform_balances(engine) == PlatformBalances(
        funding_micros=-100 * CREDIT, revenue_micros=0
    )

    hold(engine, tenant_id="acme", job_id="job-1", amount_micros=30 * CREDIT, key="job-1/hold")
    assert get_balances(engine, "acme") == TenantBalances(
        available_micros=70 * CREDIT, held_micros=30 * CREDIT, spent_micros=0
    )
    assert get_platform_balances(engine) == PlatformBalances(
        funding_micros=-100 * CREDIT, revenue_micros=0
    )
    assert get_hold(engine, "job-1") == HoldRecord(
        job_id="job-1",
        tenant_id="acme",
        amount_micros=30 * CREDIT,
        captured_micros=0,
        released_micros=0,
    )

    capture(engine, tenant_id="acme", job_id="job-1", amount_micros=12_500_001, key="job-1/c1")
    assert get_balances(engine, "acme") == TenantBalances(
        available_micros=70 * CREDIT, held_micros=17_499_999, spent_micros=12_500_001
    )
    assert get_platform_balances(engine) == PlatformBalances(
        funding_micros=-100 * CREDIT, revenue_micros=12_500_001
    )

    capture(engine, tenant_id="acme", job_id="job-1", amount_micros=5 * CREDIT, key="job-1/c2")
    assert get_balances(engine, "acme") == TenantBalances(
        available_micros=70 * CREDIT, held_micros=12_499_999, spent_micros=17_500_001
    )
    assert get_platform_balances(engine) == PlatformBalances(
        funding_micros=-100 * CREDIT, revenue_micros=17_500_001
    )

    release(engine, tenant_id="acme", job_id="job-1", amount_micros=12_499_999, key="job-1/rel")
    assert get_balances(engine, "acme") == TenantBalances(
        available_micros=82_499_999, held_micros=0, spent_micros=17_500_001
    )
    assert get_platform_balances(engine) == PlatformBalances(
        funding_micros=-100 * CREDIT, revenue_micros=17_500_001
    )
    assert get_hold(engine, "job-1") == HoldRecord(
        job_id="job-1",
        tenant_id="acme",
        amount_micros=30 * CREDIT,
        captured_micros=17_500_001,
        released_micros=12_499_999,
    )
    assert get_hold(engine, "job-1").remaining_micros == 0
    assert ledger_inconsistencies(engine) == []


def test_postings_sum_to_zero(engine):
    grant(engine, tenant_id="acme", amount_micros=50, key="g")
    hold(engine, tenant_id="acme", job_id="j", amount_micros=40, key="h")
    capture(engine, tenant_id="acme", job_id="j", amount_micros=15, key="c")
    release(engine, tenant_id="acme", job_id="j", amount_micros=25, key="r")

    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(transactions.c.kind, accounts.c.name, postings.c.amount)
            .join(postings, postings.c.transaction_id == transactions.c.id)
            .join(accounts, accounts.c.id == postings.c.account_id)
            .order_by(transactions.c.id, postings.c.amount)
        ).all()

    assert [tuple(row) for row in rows] == [
        ("grant", "funding", -50),
        ("grant", "available", 50),
        ("hold", "available", -40),
        ("hold", "held", 40),
        ("capture", "held", -15),
        ("capture", "revenue", 15),
        ("release", "held", -25),
        ("release", "available", 25),
    ]


def test_posting_balance_after_is_running_sum(engine):
    grant(engine, tenant_id="acme", amount_micros=50, key="g1")
    grant(engine, tenant_id="acme", amount_micros=7, key="g2")
    hold(engine, tenant_id="acme", job_id="j", amount_micros=20, key="h")

    with engine.connect() as connection:
        rows = connection.execute(
            sa.select(postings.c.amount, postings.c.balance_after)
            .join(accounts, accounts.c.id == postings.c.account_id)
            .where(accounts.c.tenant_id == "acme", accounts.c.name == "available")
            .order_by(postings.c.id)
        ).all()

    assert [tuple(row) for row in rows] == [(50, 50), (7, 57), (-20, 37)]


def test_replayed_key_moves_nothing(engine, ledger_inconsistencies):
    first_grant = grant(engine, tenant_id="acme", amount_micros=100, key="g")
    first_hold = hold(engine, tenant_id="acme", job_id="j", amount_micros=60, key="h")
    first_capture = capture(engine, tenant_id="acme", job_id="j", amount_micros=10, key="c")
    first_release = release(engine, tenant_id="acme", job_id="j", amount_micros=20, key="r")
    transaction_count = count_rows(engine, transactions)
    posting_count = count_rows(engine, postings)

    second_grant = grant(engine, tenant_id="acme", amount_micros=100, key="g")
    second_hold = hold(engine, tenant_id="acme", job_id="j", amount_micros=60, key="h")
    second_capture = capture(engine, tenant_id="acme", job_id="j", amount_micros=10, key="c")
    second_release = release(engine, tenant_id="acme", job_id="j", amount_micros=20, key="r")

    for first, second in [
        (first_grant, second_grant),
        (first_hold, second_hold),
        (first_capture, second_capture),
        (first_release, second_release),
    ]:
        assert first.replayed is False
        assert second.replayed is True
        assert second.transaction_id == first.transaction_id
        assert second.kind == first.kind
        assert second.job_id == first.job_id
        assert second.amount_micros == first.amount_micros
    assert count_rows(engine, transactions) == transaction_count
    assert count_rows(engine, postings) == posting_count
    assert get_balances(engine, "acme") == TenantBalances(
        available_micros=60, held_micros=30, spent_micros=10
    )
    assert get_hold(engine, "j") == HoldRecord(
        job_id="j", tenant_id="acme", amount_micros=60, captured_micros=10, released_micros=20
    )
    assert ledger_inconsistencies(engine) == []


def test_replayed_capture_after_hold_used_up(engine):
    grant(engine, tenant_id="acme", amount_micros=100, key="g")
    hold(engine, tenant_id="acme", job_id="j", amount_micros=60, key="h")
    first = capture(engine, tenant_id="acme", job_id="j", amount_micros=60, key="c")

    replayed = capture(engine, tenant_id="acme", job_id="j", amount_micros=60, key="c")

    assert replayed.replayed is True
    assert replayed.transaction_id == first.transaction_id
    assert get_balances(engine, "acme").spent_micros == 60


def test_key_reuse_other_amount_conflicts(engine):
    grant(engine, tenant_id="acme", amount_micros=100, key="g")

    with pytest.raises(IdempotencyConflict, match="amount=100.*amount=200") as caught:
        grant(engine, tenant_id="acme", amount_micros=200, key="g")

    assert caught.value.field == "amount"
    assert caught.value.posted == 100
    assert caught.value.requested == 200
    assert get_balances(engine, "acme").available_micros == 100


def test_key_reuse_other_job_conflicts(engine):
    grant(engine, tenant_id="acme", amount_micros=100, key="g")
    hold(engine, tenant_id="acme", job_id="j1", amount_micros=10, key="h")

    with pytest.raises(IdempotencyConflict, match="job_id='j1'.*job_id='j2'") as caught:
        hold(engine, tenant_id="acme", job_id="j2", amount_micros=10, key="h")

    assert caught.value.field == "job_id"
    assert get_hold(engine, "j2") is None


def test_key_reuse_other_kind_conflicts(engine):
    grant(engine, tenant_id="acme", amount_micros=100, key="g")
    hold(engine, tenant_id="acme", job_id="j", amount_micros=10, key="k")

    with pytest.raises(IdempotencyConflict, match="kind='hold'.*kind='release'") as caught:
        release(engine, tenant_id="acme", job_id="j", amount_micros=10, key="k")

    assert caught.value.field == "kind"
    assert get_hold(engine, "j").released_micros == 0


def test_key_is_scoped_per_tenant(engine):
    first = grant(engine, tenant_id="acme", amount_micros=100, key="welcome")
    second = grant(engine, tenant_id="globex", amount_micros=100, key="welcome")

    assert second.replayed is False
    assert second.transaction_id != first.transaction_id
    assert get_balances(engine, "globex").available_micros == 100


def test_capture_beyond_hold_rejected(engine):
    grant(engine, tenant_id="acme", amount_micros=100, key="g")
    hold(engine, tenant_id="acme", job_id="j", amount_micros=60, key="h")

    with pytest.raises(HoldExceeded, match="requested 61 micro-credits, 60 left") as caught:
        capture(engine, tenant_id="acme", job_id="j", amount_micros=61, key="c")

    assert caught.value.remaining_micros == 60
    assert get_balances(engine, "acme") == TenantBalances(
        available_micros=40, held_micros=60, spent_micros=0
    )
    assert get_platform_balances(engine).revenue_micros == 0


def test_release_beyond_remainder_rejected(engine):
    grant(engine, tenant_id="acme", amount_micros=100, key="g")
    hold(engine, tenant_id="acme", job_id="j", amount_micros=60, key="h")
    capture(engine, tenant_id="acme", job_id="j", amount_micros=45, key="c")

    with pytest.raises(HoldExceeded, match="requested 16 micro-credits, 15 left"):
        release(engine, tenant_id="acme", job_id="j", amount_micros=16, key="r")

    assert get_balances(engine, "acme") == TenantBalances(
        available_micros=40, held_micros=15, spent_micros=45
    )


def test_rejected_capture_leaves_key_free(engine):
    grant(engine, tenant_id="acme", amount_micros=100, key="g")
    hold(engine, tenant_id="acme", job_id="j", amount_micros=60, key="h")
    with pytest.raises(HoldExceeded):
        capture(engine, tenant_id="acme", job_id="j", amount_micros=61, key="c")

    posted = capture(engine, tenant_id="acme", job_id="j", amount_micros=60, key="c")

    assert posted.replayed is False
    assert get_balances(engine, "acme").held_micros == 0


def test_capture_without_hold_rejected(engine):
    grant(engine, tenant_id="acme", amount_micros=100, key="g")

    with pytest.raises(UnknownHold, match="no hold found for job 'missing' of tenant 'acme'"):
        capture(engine, tenant_id="acme", job_id="missing", amount_micros=1, key="c")

    assert count_rows(engine, transactions) == 1


def test_release_of_foreign_hold_rejected(engine):
    grant(engine, tenant_id="acme", amount_micros=100, key="g")
    hold(engine, tenant_id="acme", job_id="j", amount_micros=60, key="h")

    with pytest.raises(UnknownHold):
        release(engine, tenant_id="globex", job_id="j", amount_micros=60, key="r")

    assert get_hold(engine, "j").released_micros == 0
    assert get_balances(engine, "globex") == TenantBalances(
        available_micros=0, held_micros=0, spent_micros=0
    )


def test_insufficient_hold_leaves_nothing(engine, ledger_inconsistencies):
    grant(engine, tenant_id="acme", amount_micros=100, key="g")
    transaction_count = count_rows(engine, transactions)

    with pytest.raises(InsufficientFunds, match="requested 101 micro-credits, available 100"):
        hold(engine, tenant_id="acme", job_id="j", amount_micros=101, key="h")

    assert get_balances(engine, "acme") == TenantBalances(
        available_micros=100, held_micros=0, spent_micros=0
    )
    assert get_hold(engine, "j") is None
    assert count_rows(engine, transactions) == transaction_count
    assert ledger_inconsistencies(engine) == []


def test_failed_hold_key_reusable_after_grant(engine):
    grant(engine, tenant_id="acme", amount_micros=100, key="g1")
    with pytest.raises(InsufficientFunds):
        hold(engine, tenant_id="acme", job_id="j", amount_micros=150, key="h")
    grant(engine, tenant_id="acme", amount_micros=50, key="g2")

    posted = hold(engine, tenant_id="acme", job_id="j", amount_micros=150, key="h")

    assert posted.replayed is False
    assert get_balances(engine, "acme") == TenantBalances(
        available_micros=0, held_micros=150, spent_micros=0
    )


def test_hold_without_grant_rejected(engine):
    with pytest.raises(InsufficientFunds, match="available 0"):
        hold(engine, tenant_id="newcomer", job_id="j", amount_micros=1, key="h")

    assert count_rows(engine, accounts) == 0


def test_second_hold_for_job_rejected(engine):
    grant(engine, tenant_id="acme", amount_micros=100, key="g")
    hold(engine, tenant_id="acme", job_id="j", amount_micros=10, key="h1")

    with pytest.raises(DuplicateHold, match="job 'j' already has a hold"):
        hold(engine, tenant_id="acme", job_id="j", amount_micros=10, key="h2")

    assert get_balances(engine, "acme") == TenantBalances(
        available_micros=90, held_micros=10, spent_micros=0
    )


@pytest.mark.parametrize("amount", [0, -1, 1.5, True, "10", 10**18 + 1])
def test_operations_reject_invalid_amount(engine, amount):
    grant(engine, tenant_id="acme", amount_micros=100, key="g")
    hold(engine, tenant_id="acme", job_id="j", amount_micros=10, key="h")

    with pytest.raises(InvalidAmount):
        grant(engine, tenant_id="acme", amount_micros=amount, key="g2")
    with pytest.raises(InvalidAmount):
        hold(engine, tenant_id="acme", job_id="j2", amount_micros=amount, key="h2")
    with pytest.raises(InvalidAmount):
        capture(engine, tenant_id="acme", job_id="j", amount_micros=amount, key="c")
    with pytest.raises(InvalidAmount):
        release(engine, tenant_id="acme", job_id="j", amount_micros=amount, key="r")
    assert count_rows(engine, transactions) == 2


def test_grant_of_maximum_amount_posts(engine):
    grant(engine, tenant_id="acme", amount_micros=10**18, key="g")

    assert get_balances(engine, "acme").available_micros == 10**18
    assert get_platform_balances(engine).funding_micros == -(10**18)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"tenant_id": "platform", "key": "g"}, "reserved for the platform"),
        ({"tenant_id": "", "key": "g"}, "tenant_id must not be empty"),
        ({"tenant_id": "acme", "key": ""}, "key must not be empty"),
    ],
)
def test_grant_rejects_invalid_tenant_or_key(engine, arguments, message):
    with pytest.raises(ValueError, match=message):
        grant(engine, amount_micros=1, **arguments)


def test_hold_rejects_empty_job_id(engine):
    with pytest.raises(ValueError, match="job_id must not be empty"):
        hold(engine, tenant_id="acme", job_id="", amount_micros=1, key="h")


def test_balances_are_ints(engine):
    grant(engine, tenant_id="acme", amount_micros=100, key="g")
    hold(engine, tenant_id="acme", job_id="j", amount_micros=60, key="h")
    capture(engine, tenant_id="acme", job_id="j", amount_micros=25, key="c")

    balances = get_balances(engine, "acme")
    platform_balances = get_platform_balances(engine)
    held = get_hold(engine, "j")

    assert type(balances.available_micros) is int
    assert type(balances.held_micros) is int
    assert type(balances.spent_micros) is int
    assert type(platform_balances.funding_micros) is int
    assert type(platform_balances.revenue_micros) is int
    assert type(held.captured_micros) is int


def test_balances_of_unknown_tenant_are_zero(engine):
    assert get_balances(engine, "nobody") == TenantBalances(
        available_micros=0, held_micros=0, spent_micros=0
    )
    assert get_platform_balances(engine) == PlatformBalances(funding_micros=0, revenue_micros=0)


def test_hold_of_unknown_job_is_none(engine):
    assert get_hold(engine, "nothing") is None


def test_database_rejects_overdraft_without_guard(engine):
    grant(engine, tenant_id="acme", amount_micros=10, key="g")

    with pytest.raises(sa.exc.IntegrityError, match="ck_accounts_balance_not_negative"):
        with engine.begin() as connection:
            connection.execute(
                sa.update(accounts)
                .where(accounts.c.tenant_id == "acme", accounts.c.name == "available")
                .values(balance=accounts.c.balance - 11)
            )

    assert get_balances(engine, "acme").available_micros == 10


def test_database_rejects_hold_settled_beyond_amount(engine):
    grant(engine, tenant_id="acme", amount_micros=10, key="g")
    hold(engine, tenant_id="acme", job_id="j", amount_micros=10, key="h")

    with pytest.raises(sa.exc.IntegrityError, match="ck_holds_settled_within_amount"):
        with engine.begin() as connection:
            connection.execute(
                sa.update(holds).where(holds.c.job_id == "j").values(captured=6, released=5)
            )

    assert get_hold(engine, "j").remaining_micros == 10

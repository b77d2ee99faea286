import pytest
import sqlalchemy as sa

from ledger import (
    HoldRecord,
    IdempotencyConflict,
    PlatformBalances,
    RefundExceeded,
    TenantBalances,
    UnknownHold,
    capture,
    get_balances,
    get_hold,
    get_platform_balances,
    grant,
    hold,
    refund,
    release,
)
from ledger.models import holds, transactions


def settle_job(engine, *, captured: int, released: int) -> None:
    """Grant 100, hold 60 for job j, then capture and release as given."""
    grant(engine, tenant_id="acme", amount_micros=100, key="g")
    hold(engine, tenant_id="acme", job_id="j", amount_micros=60, key="h")
    if captured:
        capture(engine, tenant_id="acme", job_id="j", amount_micros=captured, key="c")
    if released:
        release(engine, tenant_id="acme", job_id="j", amount_micros=released, key="r")


def test_refund_partial_then_full(any_engine, ledger_inconsistencies):
    settle_job(any_engine, captured=40, released=20)

    first = refund(
        any_engine, tenant_id="acme", job_id="j", amount_micros=15, key="rf1", reason="slow"
    )
    assert first.kind == "refund"
    assert first.replayed is False
    assert get_balances(any_engine, "acme") == TenantBalances(
        available_micros=75, held_micros=0, spent_micros=25
    )
    assert get_platform_balances(any_engine) == PlatformBalances(
        funding_micros=-100, revenue_micros=25, expired_micros=0
    )

    refund(any_engine, tenant_id="acme", job_id="j", amount_micros=25, key="rf2", reason="down")
    assert get_balances(any_engine, "acme") == TenantBalances(
        available_micros=100, held_micros=0, spent_micros=0
    )
    assert get_platform_balances(any_engine) == PlatformBalances(
        funding_micros=-100, revenue_micros=0, expired_micros=0
    )
    assert get_hold(any_engine, "j") == HoldRecord(
        job_id="j",
        tenant_id="acme",
        amount_micros=60,
        captured_micros=40,
        released_micros=20,
        refunded_micros=40,
    )
    assert ledger_inconsistencies(any_engine) == []


def test_refund_beyond_captured_rejected(any_engine):
    settle_job(any_engine, captured=40, released=20)
    refund(any_engine, tenant_id="acme", job_id="j", amount_micros=30, key="rf1", reason="slow")

    with pytest.raises(
        RefundExceeded, match="requested 11 micro-credits, 10 captured and not yet refunded"
    ) as caught:
        refund(any_engine, tenant_id="acme", job_id="j", amount_micros=11, key="rf2", reason="more")

    assert caught.value.refundable_micros == 10
    assert caught.value.requested_micros == 11
    assert get_hold(any_engine, "j").refunded_micros == 30
    assert get_balances(any_engine, "acme").available_micros == 90


def test_refund_before_capture_rejected(any_engine):
    settle_job(any_engine, captured=0, released=0)

    with pytest.raises(RefundExceeded, match="0 captured and not yet refunded"):
        refund(any_engine, tenant_id="acme", job_id="j", amount_micros=1, key="rf", reason="x")

    assert get_hold(any_engine, "j").refunded_micros == 0


def test_rejected_refund_leaves_key_free(any_engine):
    settle_job(any_engine, captured=10, released=0)
    with pytest.raises(RefundExceeded):
        refund(any_engine, tenant_id="acme", job_id="j", amount_micros=20, key="rf", reason="x")

    posted = refund(
        any_engine, tenant_id="acme", job_id="j", amount_micros=10, key="rf", reason="x"
    )

    assert posted.replayed is False
    assert get_balances(any_engine, "acme").spent_micros == 0


def test_refund_replay_returns_first(any_engine):
    settle_job(any_engine, captured=40, released=20)
    first = refund(
        any_engine, tenant_id="acme", job_id="j", amount_micros=15, key="rf", reason="slow"
    )

    second = refund(
        any_engine, tenant_id="acme", job_id="j", amount_micros=15, key="rf", reason="slow"
    )

    assert second.replayed is True
    assert second.transaction_id == first.transaction_id
    assert get_hold(any_engine, "j").refunded_micros == 15
    assert get_balances(any_engine, "acme").available_micros == 75


def test_refund_replay_with_other_reason_conflicts(any_engine):
    settle_job(any_engine, captured=40, released=20)
    refund(any_engine, tenant_id="acme", job_id="j", amount_micros=15, key="rf", reason="slow")

    with pytest.raises(IdempotencyConflict, match="reason='slow'.*reason='down'") as caught:
        refund(any_engine, tenant_id="acme", job_id="j", amount_micros=15, key="rf", reason="down")

    assert caught.value.field == "reason"
    assert get_hold(any_engine, "j").refunded_micros == 15


def test_refund_of_unknown_job_rejected(any_engine):
    settle_job(any_engine, captured=40, released=20)

    with pytest.raises(UnknownHold, match="no hold found for job 'other' of tenant 'acme'"):
        refund(any_engine, tenant_id="acme", job_id="other", amount_micros=1, key="rf", reason="x")


def test_refund_of_other_tenants_job_rejected(any_engine):
    settle_job(any_engine, captured=40, released=20)
    grant(any_engine, tenant_id="globex", amount_micros=5, key="g")

    with pytest.raises(UnknownHold):
        refund(any_engine, tenant_id="globex", job_id="j", amount_micros=1, key="rf", reason="x")

    assert get_balances(any_engine, "globex").available_micros == 5
    assert get_platform_balances(any_engine).revenue_micros == 40


def test_refund_without_reason_rejected(any_engine):
    settle_job(any_engine, captured=40, released=20)

    with pytest.raises(ValueError, match="a refund needs a reason"):
        refund(any_engine, tenant_id="acme", job_id="j", amount_micros=1, key="rf", reason="")


def test_refunded_credits_can_be_held_again(any_engine, ledger_inconsistencies):
    settle_job(any_engine, captured=40, released=20)
    refund(any_engine, tenant_id="acme", job_id="j", amount_micros=40, key="rf", reason="down")

    hold(any_engine, tenant_id="acme", job_id="j2", amount_micros=100, key="h2")

    assert get_balances(any_engine, "acme") == TenantBalances(
        available_micros=0, held_micros=100, spent_micros=0
    )
    assert ledger_inconsistencies(any_engine) == []


def test_database_rejects_refund_beyond_captured(engine):
    settle_job(engine, captured=40, released=20)

    with pytest.raises(sa.exc.IntegrityError, match="ck_holds_refunded_within_captured"):
        with engine.begin() as connection:
            connection.execute(sa.update(holds).where(holds.c.job_id == "j").values(refunded=41))

    assert get_hold(engine, "j").refunded_micros == 0


def test_database_rejects_unknown_transaction_kind(engine):
    grant(engine, tenant_id="acme", amount_micros=1, key="g")

    with pytest.raises(sa.exc.IntegrityError, match="ck_transactions_kind_known"):
        with engine.begin() as connection:
            connection.execute(
                sa.insert(transactions).values(
                    tenant_id="acme", key="x", kind="gift", job_id="j", amount=1, reason=""
                )
            )

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ledger import (
    IdempotencyConflict,
    InsufficientFunds,
    PlatformBalances,
    TenantBalances,
    capture,
    expire_grants,
    get_balances,
    get_platform_balances,
    get_statement,
    grant,
    hold,
    release,
)

SOON = datetime(2090, 1, 1, tzinfo=UTC)
LATER = datetime(2100, 1, 1, tzinfo=UTC)
BETWEEN = datetime(2095, 1, 1, tzinfo=UTC)
AFTER_ALL = datetime(2200, 1, 1, tzinfo=UTC)
PAST = datetime(2000, 1, 1, tzinfo=UTC)


def expired_amounts(posted) -> list[tuple[str, int]]:
    return [(expiry.key, expiry.amount_micros) for expiry in posted]


def grant_three_lots(engine) -> dict[str, int]:
    """Grant 100 that never expires, 50 expiring LATER and 30 expiring SOON; return their ids."""
    never = grant(engine, tenant_id="acme", amount_micros=100, key="never")
    later = grant(engine, tenant_id="acme", amount_micros=50, key="later", expires_at=LATER)
    soon = grant(engine, tenant_id="acme", amount_micros=30, key="soon", expires_at=SOON)
    return {
        "never": never.transaction_id,
        "later": later.transaction_id,
        "soon": soon.transaction_id,
    }


def test_unspent_grant_expires(any_engine, ledger_inconsistencies):
    posted_grant = grant(any_engine, tenant_id="acme", amount_micros=100, key="g", expires_at=SOON)

    posted = expire_grants(any_engine, now=SOON)

    assert len(posted) == 1
    assert posted[0].kind == "expire"
    assert posted[0].tenant_id == "acme"
    assert posted[0].key == f"expire/{posted_grant.transaction_id}"
    assert posted[0].job_id is None
    assert posted[0].amount_micros == 100
    assert get_balances(any_engine, "acme") == TenantBalances(
        available_micros=0, held_micros=0, spent_micros=0
    )
    assert get_platform_balances(any_engine) == PlatformBalances(
        funding_micros=-100, revenue_micros=0, expired_micros=100
    )
    assert ledger_inconsistencies(any_engine) == []


def test_grant_before_its_expiry_stays(any_engine):
    grant(any_engine, tenant_id="acme", amount_micros=100, key="g", expires_at=SOON)

    posted = expire_grants(any_engine, now=SOON - timedelta(microseconds=1))

    assert posted == []
    assert get_balances(any_engine, "acme").available_micros == 100


def test_expiry_runs_once(any_engine):
    grant(any_engine, tenant_id="acme", amount_micros=100, key="g", expires_at=SOON)
    first = expire_grants(any_engine, now=SOON)

    second = expire_grants(any_engine, now=AFTER_ALL)

    assert len(first) == 1
    assert second == []
    assert get_platform_balances(any_engine).expired_micros == 100


def test_expiry_accepts_other_timezones(any_engine):
    grant(any_engine, tenant_id="acme", amount_micros=100, key="g", expires_at=SOON)
    one_hour_east = timezone(timedelta(hours=1))

    before = expire_grants(any_engine, now=datetime(2090, 1, 1, 0, 59, tzinfo=one_hour_east))
    at = expire_grants(any_engine, now=datetime(2090, 1, 1, 1, 0, tzinfo=one_hour_east))

    assert before == []
    assert expired_amounts(at) == [("expire/1", 100)]


def test_hold_draws_soonest_expiry_first(any_engine, ledger_inconsistencies):
    ids = grant_three_lots(any_engine)

    hold(any_engine, tenant_id="acme", job_id="j", amount_micros=60, key="h")

    # The hold took all 30 of the soonest lot and 30 of the later one.
    assert expire_grants(any_engine, now=BETWEEN) == []
    assert expired_amounts(expire_grants(any_engine, now=AFTER_ALL)) == [
        (f"expire/{ids['later']}", 20)
    ]
    assert get_balances(any_engine, "acme") == TenantBalances(
        available_micros=100, held_micros=60, spent_micros=0
    )
    assert ledger_inconsistencies(any_engine) == []


def test_capture_spends_soonest_expiry_first(any_engine):
    ids = grant_three_lots(any_engine)
    hold(any_engine, tenant_id="acme", job_id="j", amount_micros=60, key="h")

    capture(any_engine, tenant_id="acme", job_id="j", amount_micros=30, key="c")
    release(any_engine, tenant_id="acme", job_id="j", amount_micros=30, key="r")

    # The capture spent the soonest lot, so the release went back to the later one.
    assert expire_grants(any_engine, now=BETWEEN) == []
    assert expired_amounts(expire_grants(any_engine, now=AFTER_ALL)) == [
        (f"expire/{ids['later']}", 50)
    ]


def test_release_returns_credits_to_their_lots(any_engine, ledger_inconsistencies):
    ids = grant_three_lots(any_engine)
    hold(any_engine, tenant_id="acme", job_id="j", amount_micros=60, key="h")

    release(any_engine, tenant_id="acme", job_id="j", amount_micros=60, key="r")

    assert expired_amounts(expire_grants(any_engine, now=BETWEEN)) == [
        (f"expire/{ids['soon']}", 30)
    ]
    assert expired_amounts(expire_grants(any_engine, now=AFTER_ALL)) == [
        (f"expire/{ids['later']}", 50)
    ]
    assert get_balances(any_engine, "acme").available_micros == 100
    assert ledger_inconsistencies(any_engine) == []


def test_release_takes_latest_expiry_first(any_engine):
    ids = grant_three_lots(any_engine)
    hold(any_engine, tenant_id="acme", job_id="j", amount_micros=60, key="h")

    release(any_engine, tenant_id="acme", job_id="j", amount_micros=20, key="r")

    # The 20 went back to the later lot; the soonest lot is still fully held.
    assert expire_grants(any_engine, now=BETWEEN) == []
    assert expired_amounts(expire_grants(any_engine, now=AFTER_ALL)) == [
        (f"expire/{ids['later']}", 40)
    ]


def test_released_credits_of_expired_grant_expire_again(any_engine, ledger_inconsistencies):
    ids = grant_three_lots(any_engine)
    hold(any_engine, tenant_id="acme", job_id="j", amount_micros=60, key="h")
    capture(any_engine, tenant_id="acme", job_id="j", amount_micros=10, key="c")
    assert expire_grants(any_engine, now=BETWEEN) == []

    posted_release = release(any_engine, tenant_id="acme", job_id="j", amount_micros=50, key="r")

    # The release returned 30 to the later lot and 20 to the soonest one, which has expired.
    newest = get_statement(any_engine, "acme", limit=2).entries
    assert [(e.kind, e.key, e.job_id, e.amount_micros) for e in newest] == [
        ("expire", f"expire/{ids['soon']}/{posted_release.transaction_id}", "j", 20),
        ("release", "r", "j", 50),
    ]
    assert newest[0].available_change_micros == -20
    assert newest[0].available_after_micros == 150
    assert newest[1].available_after_micros == 170
    assert get_balances(any_engine, "acme") == TenantBalances(
        available_micros=150, held_micros=0, spent_micros=10
    )
    assert get_platform_balances(any_engine) == PlatformBalances(
        funding_micros=-180, revenue_micros=10, expired_micros=20
    )
    assert ledger_inconsistencies(any_engine) == []


def test_captured_credits_of_expired_grant_stay_spent(any_engine, ledger_inconsistencies):
    grant(any_engine, tenant_id="acme", amount_micros=30, key="soon", expires_at=SOON)
    hold(any_engine, tenant_id="acme", job_id="j", amount_micros=30, key="h")
    assert expire_grants(any_engine, now=BETWEEN) == []

    capture(any_engine, tenant_id="acme", job_id="j", amount_micros=30, key="c")

    assert get_balances(any_engine, "acme") == TenantBalances(
        available_micros=0, held_micros=0, spent_micros=30
    )
    assert get_platform_balances(any_engine).expired_micros == 0
    assert ledger_inconsistencies(any_engine) == []


def test_grant_past_its_expiry_cannot_be_held(any_engine):
    grant(any_engine, tenant_id="acme", amount_micros=100, key="old", expires_at=PAST)
    grant(any_engine, tenant_id="acme", amount_micros=10, key="new")

    with pytest.raises(InsufficientFunds, match="requested 11 micro-credits, available 10"):
        hold(any_engine, tenant_id="acme", job_id="j", amount_micros=11, key="h")

    # Until expire_grants runs, the expired credits still count in the balance.
    assert get_balances(any_engine, "acme").available_micros == 110
    hold(any_engine, tenant_id="acme", job_id="j", amount_micros=10, key="h")
    assert expired_amounts(expire_grants(any_engine, now=datetime.now(UTC))) == [("expire/1", 100)]
    assert get_balances(any_engine, "acme").available_micros == 0


def test_grant_replay_with_other_expiry_conflicts(any_engine):
    grant(any_engine, tenant_id="acme", amount_micros=100, key="g", expires_at=SOON)

    with pytest.raises(IdempotencyConflict, match="expires_at") as caught:
        grant(any_engine, tenant_id="acme", amount_micros=100, key="g", expires_at=LATER)

    assert caught.value.field == "expires_at"
    assert caught.value.posted == SOON
    assert caught.value.requested == LATER


def test_grant_replay_expiry_in_other_timezone(any_engine):
    first = grant(any_engine, tenant_id="acme", amount_micros=100, key="g", expires_at=SOON)

    second = grant(
        any_engine,
        tenant_id="acme",
        amount_micros=100,
        key="g",
        expires_at=SOON.astimezone(timezone(timedelta(hours=-5))),
    )

    assert second.replayed is True
    assert second.transaction_id == first.transaction_id


def test_grant_rejects_naive_expiry(any_engine):
    with pytest.raises(ValueError, match="has no timezone"):
        grant(
            any_engine,
            tenant_id="acme",
            amount_micros=1,
            key="g",
            expires_at=datetime(2090, 1, 1),
        )


def test_expire_grants_rejects_naive_time(any_engine):
    with pytest.raises(ValueError, match="has no timezone"):
        expire_grants(any_engine, now=datetime(2090, 1, 1))


def test_expire_key_prefix_reserved(any_engine):
    with pytest.raises(ValueError, match="reserved for the ledger's expire transactions"):
        grant(any_engine, tenant_id="acme", amount_micros=1, key="expire/1")

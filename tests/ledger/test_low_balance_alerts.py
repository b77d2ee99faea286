import pytest

from ledger import grant, hold, release
from ledger.alerts import (
    LowBalanceNotice,
    check_low_balance,
    delete_low_balance_alert,
    get_low_balance_alert,
    rearm_low_balance,
    set_low_balance_alert,
)

URL = "https://example.com/alerts"


def test_alert_notifies_once_per_crossing(any_engine):
    grant(any_engine, tenant_id="acme", amount_micros=10_000_000, key="g")
    set_low_balance_alert(any_engine, tenant_id="acme", threshold_micros=5_000_000, callback_url=URL)

    hold(any_engine, tenant_id="acme", job_id="j1", amount_micros=4_000_000, key="h1")
    above = check_low_balance(any_engine, "acme")
    hold(any_engine, tenant_id="acme", job_id="j2", amount_micros=2_000_000, key="h2")
    first = check_low_balance(any_engine, "acme")
    hold(any_engine, tenant_id="acme", job_id="j3", amount_micros=1_000_000, key="h3")
    still_below = check_low_balance(any_engine, "acme")

    assert above is None
    assert first == LowBalanceNotice(
        tenant_id="acme", threshold_micros=5_000_000, available_micros=4_000_000, callback_url=URL
    )
    assert still_below is None
    assert get_low_balance_alert(any_engine, "acme").armed is False


def test_alert_rearms_after_balance_recovers(any_engine):
    grant(any_engine, tenant_id="acme", amount_micros=10_000_000, key="g")
    set_low_balance_alert(any_engine, tenant_id="acme", threshold_micros=5_000_000, callback_url=URL)
    hold(any_engine, tenant_id="acme", job_id="j1", amount_micros=6_000_000, key="h1")
    assert check_low_balance(any_engine, "acme") is not None

    release(any_engine, tenant_id="acme", job_id="j1", amount_micros=6_000_000, key="r1")
    rearm_low_balance(any_engine, "acme")
    armed = get_low_balance_alert(any_engine, "acme").armed
    hold(any_engine, tenant_id="acme", job_id="j2", amount_micros=6_000_000, key="h2")
    second = check_low_balance(any_engine, "acme")

    assert armed is True
    assert second is not None
    assert second.available_micros == 4_000_000


def test_rearm_never_notifies(any_engine):
    grant(any_engine, tenant_id="acme", amount_micros=1_000_000, key="g")
    set_low_balance_alert(any_engine, tenant_id="acme", threshold_micros=5_000_000, callback_url=URL)

    rearm_low_balance(any_engine, "acme")

    assert get_low_balance_alert(any_engine, "acme").armed is True
    assert check_low_balance(any_engine, "acme") is not None


def test_tenant_without_alert_gets_no_notice(any_engine):
    grant(any_engine, tenant_id="acme", amount_micros=1_000_000, key="g")

    assert check_low_balance(any_engine, "acme") is None
    assert get_low_balance_alert(any_engine, "acme") is None


def test_set_alert_replaces_and_delete_removes(any_engine):
    set_low_balance_alert(any_engine, tenant_id="acme", threshold_micros=1, callback_url=URL)
    set_low_balance_alert(any_engine, tenant_id="acme", threshold_micros=2, callback_url=URL + "/2")

    replaced = get_low_balance_alert(any_engine, "acme")
    deleted = delete_low_balance_alert(any_engine, "acme")
    deleted_again = delete_low_balance_alert(any_engine, "acme")

    assert (replaced.threshold_micros, replaced.callback_url) == (2, URL + "/2")
    assert deleted is True
    assert deleted_again is False


def test_set_alert_zero_threshold_rejected(any_engine):
    with pytest.raises(ValueError, match="threshold_micros must be positive, got 0"):
        set_low_balance_alert(any_engine, tenant_id="acme", threshold_micros=0, callback_url=URL)

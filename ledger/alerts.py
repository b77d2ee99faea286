"""Low-balance alerts: notify a tenant once each time its available credits fall below a
threshold it chose.

An alert is armed while the available balance is at or above the threshold. `check_low_balance`
compares the balance with the threshold under a row lock on the alert. A balance below it
disarms an armed alert and returns a notice, which the caller delivers. A balance at or above
it arms the alert again. Callers run it after a hold, which can cross the threshold downwards,
and `rearm_low_balance`, which only ever arms, after a release, grant or refund, whose caller
may have no durable way to deliver a notice.

NOTE: an expiry also lowers the available balance but runs no check, so a fall below the
threshold by expiry is noticed only at the tenant's next hold.
"""

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.db import run_with_reconnect
from ledger.models import AVAILABLE, accounts, low_balance_alerts


@dataclass(frozen=True)
class LowBalanceAlert:
    """A tenant's alert settings."""

    tenant_id: str
    threshold_micros: int
    callback_url: str
    armed: bool


@dataclass(frozen=True)
class LowBalanceNotice:
    """A fall below the threshold, to deliver to `callback_url`."""

    tenant_id: str
    threshold_micros: int
    available_micros: int
    callback_url: str


def set_low_balance_alert(
    engine: Engine, *, tenant_id: str, threshold_micros: int, callback_url: str
) -> LowBalanceAlert:
    """Create or replace the tenant's alert, armed, so the next fall below notifies.

    Raises:
        ValueError: `threshold_micros` is not positive.
    """
    if threshold_micros <= 0:
        raise ValueError(f"threshold_micros must be positive, got {threshold_micros}")
    values = {"threshold": threshold_micros, "callback_url": callback_url, "armed": True}

    def upsert() -> None:
        with engine.begin() as connection:
            updated = connection.execute(
                sa.update(low_balance_alerts)
                .where(low_balance_alerts.c.tenant_id == tenant_id)
                .values(**values, updated_at=sa.func.now())
            ).rowcount
            if updated == 0:
                connection.execute(
                    sa.insert(low_balance_alerts).values(tenant_id=tenant_id, **values)
                )

    run_with_reconnect(engine, upsert)
    return LowBalanceAlert(tenant_id, threshold_micros, callback_url, armed=True)


def get_low_balance_alert(engine: Engine, tenant_id: str) -> LowBalanceAlert | None:
    """Return the tenant's alert, or None when it has none."""

    def read() -> LowBalanceAlert | None:
        with engine.connect() as connection:
            row = connection.execute(
                sa.select(low_balance_alerts).where(low_balance_alerts.c.tenant_id == tenant_id)
            ).one_or_none()
        if row is None:
            return None
        return LowBalanceAlert(row.tenant_id, row.threshold, row.callback_url, row.armed)

    return run_with_reconnect(engine, read)


def delete_low_balance_alert(engine: Engine, tenant_id: str) -> bool:
    """Remove the tenant's alert; return whether it had one."""

    def delete() -> bool:
        with engine.begin() as connection:
            return bool(
                connection.execute(
                    sa.delete(low_balance_alerts).where(
                        low_balance_alerts.c.tenant_id == tenant_id
                    )
                ).rowcount
            )

    return run_with_reconnect(engine, delete)


def check_low_balance(engine: Engine, tenant_id: str) -> LowBalanceNotice | None:
    """Arm or disarm the tenant's alert by its available balance.

    Returns a notice when the balance fell below the threshold since the alert was last armed.
    """
    return _check(engine, tenant_id, may_notify=True)


def rearm_low_balance(engine: Engine, tenant_id: str) -> None:
    """Arm the tenant's alert again if its available balance is back at the threshold."""
    _check(engine, tenant_id, may_notify=False)


def _check(engine: Engine, tenant_id: str, *, may_notify: bool) -> LowBalanceNotice | None:

    def check() -> LowBalanceNotice | None:
        with engine.begin() as connection:
            alert = connection.execute(
                sa.select(low_balance_alerts)
                .where(low_balance_alerts.c.tenant_id == tenant_id)
                .with_for_update()
            ).one_or_none()
            if alert is None:
                return None
            available = connection.execute(
                sa.select(accounts.c.balance).where(
                    accounts.c.tenant_id == tenant_id, accounts.c.name == AVAILABLE
                )
            ).scalar_one_or_none() or 0

            below = available < alert.threshold
            if below == (not alert.armed) or (below and not may_notify):
                return None
            connection.execute(
                sa.update(low_balance_alerts)
                .where(low_balance_alerts.c.tenant_id == tenant_id)
                .values(armed=not below)
            )
            if not below:
                return None
            return LowBalanceNotice(
                tenant_id=tenant_id,
                threshold_micros=alert.threshold,
                available_micros=available,
                callback_url=alert.callback_url,
            )

    return run_with_reconnect(engine, check)

"""Read-only views of the ledger: a tenant's balances, the platform's balances, a job's hold."""

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.db import run_with_reconnect
from ledger.models import (
    AVAILABLE,
    EXPIRED,
    FUNDING,
    HELD,
    PLATFORM_TENANT_ID,
    REVENUE,
    accounts,
    holds,
)


@dataclass(frozen=True)
class TenantBalances:
    """A tenant's balances, in micro-credits. A tenant that never posted has all zeros."""

    available_micros: int
    """Credits the tenant can spend on new holds."""

    held_micros: int
    """Credits reserved for jobs and not yet captured or released."""

    spent_micros: int
    """Total captured from the tenant's holds minus the total refunded, over all time."""


@dataclass(frozen=True)
class PlatformBalances:
    """The platform's own balances, in micro-credits."""

    funding_micros: int
    """Funding balance: minus the total ever granted to tenants."""

    revenue_micros: int
    """Total captured from all tenants, minus the total refunded."""

    expired_micros: int = 0
    """Total of expired grants, over all time."""


@dataclass(frozen=True)
class HoldRecord:
    """A job's hold and how much of it was captured or released."""

    job_id: str
    """Job the hold belongs to."""

    tenant_id: str
    """Tenant whose credits are held."""

    amount_micros: int
    """Amount held when the hold was posted."""

    captured_micros: int
    """Total captured from the hold so far."""

    released_micros: int
    """Total released from the hold so far."""

    refunded_micros: int = 0
    """Total refunded of what was captured, so far."""

    @property
    def remaining_micros(self) -> int:
        """Amount still held, which captures and releases can draw on."""
        return self.amount_micros - self.captured_micros - self.released_micros


def get_balances(engine: Engine, tenant_id: str) -> TenantBalances:
    """Read a tenant's available, held and spent balances.

    Spent is what was captured from the tenant's holds minus what was refunded.

    The three values come from one SQL statement, so on PostgreSQL they are one consistent
    snapshot even while operations run.
    """
    statement = sa.select(
        _balance_subquery(tenant_id, AVAILABLE),
        _balance_subquery(tenant_id, HELD),
        _spent_subquery(tenant_id),
    )
    available, held, spent = _read_one_row(engine, statement)

    return TenantBalances(available_micros=available, held_micros=held, spent_micros=spent)


def get_platform_balances(engine: Engine) -> PlatformBalances:
    """Read the platform's funding, revenue and expired balances in one consistent snapshot."""
    statement = sa.select(
        _balance_subquery(PLATFORM_TENANT_ID, FUNDING),
        _balance_subquery(PLATFORM_TENANT_ID, REVENUE),
        _balance_subquery(PLATFORM_TENANT_ID, EXPIRED),
    )
    funding, revenue, expired = _read_one_row(engine, statement)

    return PlatformBalances(funding_micros=funding, revenue_micros=revenue, expired_micros=expired)


def get_hold(engine: Engine, job_id: str) -> HoldRecord | None:
    """Read a job's hold, or return None when the job has none."""

    def read() -> sa.Row | None:
        with engine.connect() as connection:
            return connection.execute(
                sa.select(holds).where(holds.c.job_id == job_id)
            ).one_or_none()

    row = run_with_reconnect(engine, read)

    if row is None:
        return None
    return HoldRecord(
        job_id=row.job_id,
        tenant_id=row.tenant_id,
        amount_micros=row.amount,
        captured_micros=row.captured,
        released_micros=row.released,
        refunded_micros=row.refunded,
    )


def list_open_holds(engine: Engine) -> list[HoldRecord]:
    """Read every hold that still has credits held, oldest first."""

    def read() -> list[sa.Row]:
        with engine.connect() as connection:
            return connection.execute(
                sa.select(holds)
                .where(holds.c.captured + holds.c.released < holds.c.amount)
                .order_by(holds.c.created_at, holds.c.job_id)
            ).all()

    return [
        HoldRecord(
            job_id=row.job_id,
            tenant_id=row.tenant_id,
            amount_micros=row.amount,
            captured_micros=row.captured,
            released_micros=row.released,
            refunded_micros=row.refunded,
        )
        for row in run_with_reconnect(engine, read)
    ]


def _read_one_row(engine: Engine, statement: sa.Select) -> sa.Row:
    def read() -> sa.Row:
        with engine.connect() as connection:
            return connection.execute(statement).one()

    return run_with_reconnect(engine, read)


def _balance_subquery(tenant_id: str, name: str) -> sa.ScalarSelect[int]:
    # An account that does not exist yet has a balance of zero.
    balance = (
        sa.select(accounts.c.balance)
        .where(accounts.c.tenant_id == tenant_id, accounts.c.name == name)
        .scalar_subquery()
    )
    return sa.func.coalesce(balance, 0)


def _spent_subquery(tenant_id: str) -> sa.ScalarSelect[int]:
    # PostgreSQL sums BIGINT into NUMERIC, which psycopg returns as a Decimal.
    spent = sa.func.coalesce(sa.func.sum(holds.c.captured - holds.c.refunded), 0)
    return (
        sa.select(sa.cast(spent, sa.BigInteger()))
        .where(holds.c.tenant_id == tenant_id)
        .scalar_subquery()
    )

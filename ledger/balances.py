"""Read-only views of the ledger: a tenant's balances, the platform's balances, a job's hold."""

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.models import (
    AVAILABLE,
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
    """Total captured from the tenant's holds, over all time."""


@dataclass(frozen=True)
class PlatformBalances:
    """The platform's own balances, in micro-credits."""

    funding_micros: int
    """Funding balance: minus the total ever granted to tenants."""

    revenue_micros: int
    """Total captured from all tenants."""


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

    @property
    def remaining_micros(self) -> int:
        """Amount still held, which captures and releases can draw on."""
        return self.amount_micros - self.captured_micros - self.released_micros


def get_balances(engine: Engine, tenant_id: str) -> TenantBalances:
    """Read a tenant's available, held and spent balances.

    The three values come from one SQL statement, so on PostgreSQL they are one consistent
    snapshot even while operations run.
    """
    statement = sa.select(
        _balance_subquery(tenant_id, AVAILABLE),
        _balance_subquery(tenant_id, HELD),
        _spent_subquery(tenant_id),
    )
    with engine.connect() as connection:
        available, held, spent = connection.execute(statement).one()

    return TenantBalances(available_micros=available, held_micros=held, spent_micros=spent)


def get_platform_balances(engine: Engine) -> PlatformBalances:
    """Read the platform's funding and revenue balances in one consistent snapshot."""
    statement = sa.select(
        _balance_subquery(PLATFORM_TENANT_ID, FUNDING),
        _balance_subquery(PLATFORM_TENANT_ID, REVENUE),
    )
    with engine.connect() as connection:
        funding, revenue = connection.execute(statement).one()

    return PlatformBalances(funding_micros=funding, revenue_micros=revenue)


def get_hold(engine: Engine, job_id: str) -> HoldRecord | None:
    """Read a job's hold, or return None when the job has none."""
    with engine.connect() as connection:
        row = connection.execute(sa.select(holds).where(holds.c.job_id == job_id)).one_or_none()

    if row is None:
        return None
    return HoldRecord(
        job_id=row.job_id,
        tenant_id=row.tenant_id,
        amount_micros=row.amount,
        captured_micros=row.captured,
        released_micros=row.released,
    )


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
    spent = sa.func.coalesce(sa.func.sum(holds.c.captured), 0)
    return (
        sa.select(sa.cast(spent, sa.BigInteger()))
        .where(holds.c.tenant_id == tenant_id)
        .scalar_subquery()
    )

"""Provider charges to the platform, booked beside what the platform bills its tenants.

A tenant pays the quoted price of the offer its job was placed on. The provider may charge the
platform another price: catalog prices drift, and a spot price moves after the quote. Each
segment of a job (one attempt's instance) is therefore booked twice. Settlement captures the
quoted cost from the tenant's hold, and `record_provider_charge` books the provider's cost in
the platform's `provider_cost/<provider>` and `provider_payable/<provider>` accounts, with a row
in `provider_charges` (see `ledger.models`).

`variance_report` lists the jobs whose providers charged more than they quoted, with the
platform's margin on each: what the tenant was billed (captured minus refunded) minus what the
providers charged.
"""

import logging
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from ledger import posting_python
from ledger.db import run_with_reconnect
from ledger.errors import InvalidAmount
from ledger.models import holds, provider_charges
from ledger.posting_python import as_utc

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProviderCharge:
    """A provider's charge for one segment of a job. Amounts are in micro-credits."""

    job_id: str
    tenant_id: str
    """Tenant whose job the segment belongs to."""

    attempt: int
    """Number of the provisioning attempt that launched the instance; one charge per attempt."""

    provider: str
    instance_id: str
    billable_seconds: int
    quoted_price_per_hour_micros: int
    """Price per hour of the offer, which the tenant pays."""

    quoted_cost_micros: int
    """Cost of the segment at the quoted price: what settlement captures for it."""

    charged_price_per_hour_micros: int
    """Price per hour the provider reports charging; the quoted price when it reports none."""

    charged_cost_micros: int
    """Cost of the segment at the charged price."""

    reported: bool
    """Whether the provider reported its price; False when the quoted price is used instead."""


@dataclass(frozen=True)
class RecordedCharge:
    """Result of `record_provider_charge`."""

    transaction_id: int | None
    """The provider_charge transaction; None when the charged cost is zero."""

    replayed: bool
    """True when the segment had been booked before with the same values."""


@dataclass(frozen=True)
class JobVariance:
    """One job's quoted and charged provider cost, and the platform's margin on it."""

    job_id: str
    tenant_id: str
    providers: list[str]
    """Providers of the job's segments, sorted."""

    segments: int
    quoted_cost_micros: int
    """Sum of the segments' costs at the quoted prices."""

    charged_cost_micros: int
    """Sum of what the providers charged for the segments."""

    billed_micros: int
    """Amount the tenant paid, captured minus refunded; 0 while the job is not settled."""

    last_charged_at: datetime

    @property
    def variance_micros(self) -> int:
        """`charged - quoted`: positive when the providers charged more than they quoted."""
        return self.charged_cost_micros - self.quoted_cost_micros

    @property
    def margin_micros(self) -> int:
        """`billed - charged`: what the platform kept, negative for a loss."""
        return self.billed_micros - self.charged_cost_micros


def record_provider_charge(engine: Engine, charge: ProviderCharge) -> RecordedCharge:
    """Book a segment's provider cost, once per (job, attempt), in one database transaction.

    Raises:
        InvalidAmount: An amount or the attempt number is negative.
        IdempotencyConflict: The segment was booked before with different values.
    """
    for amount in (
        charge.billable_seconds,
        charge.quoted_price_per_hour_micros,
        charge.quoted_cost_micros,
        charge.charged_price_per_hour_micros,
        charge.charged_cost_micros,
        charge.attempt,
    ):
        if not isinstance(amount, int) or isinstance(amount, bool) or amount < 0:
            raise InvalidAmount(amount)

    values = {
        "job_id": charge.job_id,
        "attempt": charge.attempt,
        "tenant_id": charge.tenant_id,
        "provider": charge.provider,
        "instance_id": charge.instance_id,
        "billable_seconds": charge.billable_seconds,
        "quoted_price_per_hour": charge.quoted_price_per_hour_micros,
        "charged_price_per_hour": charge.charged_price_per_hour_micros,
        "quoted_cost": charge.quoted_cost_micros,
        "charged_cost": charge.charged_cost_micros,
        "reported": charge.reported,
    }

    def book() -> tuple[int | None, bool]:
        with engine.begin() as connection:
            return posting_python.record_provider_charge(connection, values)

    try:
        transaction_id, replayed = run_with_reconnect(engine, book)
    except IntegrityError:
        # A concurrent call booked the same segment first; this one now finds its row.
        transaction_id, replayed = run_with_reconnect(engine, book)

    if not replayed:
        logger.info(
            "booked provider charge of job %s attempt %d: provider=%s quoted=%d charged=%d",
            charge.job_id,
            charge.attempt,
            charge.provider,
            charge.quoted_cost_micros,
            charge.charged_cost_micros,
        )
    return RecordedCharge(transaction_id=transaction_id, replayed=replayed)


def variance_report(
    engine: Engine,
    *,
    since: datetime | None = None,
    provider: str | None = None,
    include_all: bool = False,
    limit: int = 100,
) -> list[JobVariance]:
    """Return the jobs whose providers charged more than they quoted, largest variance first.

    Args:
        engine: Ledger database engine.
        since: Only jobs with a charge booked at or after this time; None for all.
        provider: Only jobs with a segment on this provider; None for all.
        include_all: Also list jobs charged at or below their quotes.
        limit: Maximum number of jobs returned.
    """
    charged = sa.func.sum(provider_charges.c.charged_cost)
    quoted = sa.func.sum(provider_charges.c.quoted_cost)
    statement = (
        sa.select(
            provider_charges.c.job_id,
            provider_charges.c.tenant_id,
            sa.func.count().label("segments"),
            quoted.label("quoted"),
            charged.label("charged"),
            sa.func.max(provider_charges.c.created_at).label("last_charged_at"),
        )
        .group_by(provider_charges.c.job_id, provider_charges.c.tenant_id)
        .order_by((charged - quoted).desc(), provider_charges.c.job_id)
        .limit(limit)
    )
    if not include_all:
        statement = statement.having(charged > quoted)
    if since is not None:
        statement = statement.having(sa.func.max(provider_charges.c.created_at) >= since)
    if provider is not None:
        on_provider = sa.select(provider_charges.c.job_id).where(
            provider_charges.c.provider == provider
        )
        statement = statement.where(provider_charges.c.job_id.in_(on_provider))

    def read() -> list[JobVariance]:
        with engine.connect() as connection:
            rows = connection.execute(statement).all()
            job_ids = [row.job_id for row in rows]
            providers: dict[str, set[str]] = {job_id: set() for job_id in job_ids}
            for job_id, name in connection.execute(
                sa.select(provider_charges.c.job_id, provider_charges.c.provider).where(
                    provider_charges.c.job_id.in_(job_ids)
                )
            ):
                providers[job_id].add(name)
            billed = dict(
                connection.execute(
                    sa.select(holds.c.job_id, holds.c.captured - holds.c.refunded).where(
                        holds.c.job_id.in_(job_ids)
                    )
                ).all()
            )
        return [
            JobVariance(
                job_id=row.job_id,
                tenant_id=row.tenant_id,
                providers=sorted(providers[row.job_id]),
                segments=row.segments,
                quoted_cost_micros=int(row.quoted),
                charged_cost_micros=int(row.charged),
                billed_micros=int(billed.get(row.job_id, 0)),
                last_charged_at=as_utc(row.last_charged_at),
            )
            for row in rows
        ]

    return run_with_reconnect(engine, read)

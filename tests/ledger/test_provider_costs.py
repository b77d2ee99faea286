import dataclasses
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from ledger import (
    IdempotencyConflict,
    InvalidAmount,
    ProviderCharge,
    capture,
    grant,
    hold,
    record_provider_charge,
    refund,
    release,
    variance_report,
    verify_ledger,
)
from ledger.models import PLATFORM_TENANT_ID, accounts, provider_charges, transactions


def charge(job_id: str = "j-1", attempt: int = 1, **changes) -> ProviderCharge:
    values = dict(
        job_id=job_id,
        tenant_id="acme",
        attempt=attempt,
        provider="runpod",
        instance_id=f"pod-{job_id}-{attempt}",
        billable_seconds=3600,
        quoted_price_per_hour_micros=2_000_000,
        quoted_cost_micros=2_000_000,
        charged_price_per_hour_micros=2_500_000,
        charged_cost_micros=2_500_000,
        reported=True,
    )
    values.update(changes)
    return ProviderCharge(**values)


def platform_balances(engine) -> dict[str, int]:
    with engine.connect() as connection:
        return dict(
            connection.execute(
                sa.select(accounts.c.name, accounts.c.balance).where(
                    accounts.c.tenant_id == PLATFORM_TENANT_ID
                )
            ).all()
        )


def settle_job(engine, job_id: str, *, held: int, captured: int) -> None:
    hold(engine, tenant_id="acme", job_id=job_id, amount_micros=held, key=f"{job_id}/hold")
    capture(engine, tenant_id="acme", job_id=job_id, amount_micros=captured, key=f"{job_id}/c")
    if held > captured:
        release(
            engine, tenant_id="acme", job_id=job_id, amount_micros=held - captured, key=f"{job_id}/r"
        )


def test_record_provider_charge_moves_cost_to_payable(any_engine):
    recorded = record_provider_charge(any_engine, charge())

    assert recorded.transaction_id is not None
    assert recorded.replayed is False
    assert platform_balances(any_engine) == {
        "provider_cost/runpod": -2_500_000,
        "provider_payable/runpod": 2_500_000,
    }
    with any_engine.connect() as connection:
        row = connection.execute(
            sa.select(transactions).where(transactions.c.id == recorded.transaction_id)
        ).one()
    assert row.kind == "provider_charge"
    assert row.tenant_id == PLATFORM_TENANT_ID
    assert row.job_id == "j-1"
    assert row.key == "j-1/provider-charge/1"
    assert row.amount == 2_500_000
    assert verify_ledger(any_engine).ok


def test_record_provider_charge_replay_returns_first(any_engine):
    first = record_provider_charge(any_engine, charge())
    again = record_provider_charge(any_engine, charge())

    assert again.transaction_id == first.transaction_id
    assert again.replayed is True
    assert platform_balances(any_engine)["provider_payable/runpod"] == 2_500_000


def test_record_provider_charge_conflict_names_field(any_engine):
    record_provider_charge(any_engine, charge())

    with pytest.raises(IdempotencyConflict) as raised:
        record_provider_charge(any_engine, charge(charged_cost_micros=2_600_000))

    assert raised.value.field == "charged_cost"
    assert raised.value.posted == 2_500_000
    assert raised.value.requested == 2_600_000
    assert platform_balances(any_engine)["provider_payable/runpod"] == 2_500_000


def test_record_provider_charge_zero_books_row_only(any_engine):
    recorded = record_provider_charge(
        any_engine,
        charge(
            billable_seconds=0,
            quoted_cost_micros=0,
            charged_cost_micros=0,
            reported=False,
            charged_price_per_hour_micros=2_000_000,
        ),
    )

    assert recorded.transaction_id is None
    assert platform_balances(any_engine) == {}
    with any_engine.connect() as connection:
        assert connection.execute(sa.select(sa.func.count()).select_from(provider_charges)).scalar() == 1
    assert verify_ledger(any_engine).ok


@pytest.mark.parametrize(
    "field", ["billable_seconds", "quoted_cost_micros", "charged_cost_micros", "attempt"]
)
def test_record_provider_charge_negative_rejected(any_engine, field):
    with pytest.raises(InvalidAmount):
        record_provider_charge(any_engine, charge(**{field: -1}))

    assert platform_balances(any_engine) == {}


def test_record_provider_charge_concurrent_books_once(engine):
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: record_provider_charge(engine, charge()), range(8)))

    assert len({result.transaction_id for result in results}) == 1
    assert sum(not result.replayed for result in results) == 1
    assert platform_balances(engine)["provider_payable/runpod"] == 2_500_000
    assert verify_ledger(engine).ok


def test_verify_detects_payable_off_by_charges(any_engine):
    record_provider_charge(any_engine, charge())
    with any_engine.begin() as connection:
        connection.execute(
            sa.update(provider_charges).values(charged_cost=provider_charges.c.charged_cost + 1)
        )

    mismatches = [str(mismatch) for mismatch in verify_ledger(any_engine).mismatches]

    assert (
        "account platform/provider_cost/runpod: balance is -2500000, expected -2500001"
        " (difference +1)" in mismatches
    )
    assert (
        "account platform/provider_payable/runpod: balance is 2500000, expected 2500001"
        " (difference -1)" in mismatches
    )
    assert any(mismatch.startswith("provider_charge transaction ") for mismatch in mismatches)


def test_variance_report_lists_overcharged_jobs_first(any_engine):
    grant(any_engine, tenant_id="acme", amount_micros=100_000_000, key="g")
    # j-over: two segments, the second overcharged by 0.5 credits.
    settle_job(any_engine, "j-over", held=10_000_000, captured=4_000_000)
    record_provider_charge(
        any_engine,
        charge("j-over", 1, charged_cost_micros=2_000_000, charged_price_per_hour_micros=2_000_000),
    )
    record_provider_charge(any_engine, charge("j-over", 2, provider="aws"))
    # j-much: overcharged by 1 credit, then refunded 1 credit.
    settle_job(any_engine, "j-much", held=5_000_000, captured=2_000_000)
    refund(any_engine, tenant_id="acme", job_id="j-much", amount_micros=1_000_000, key="rf", reason="x")
    record_provider_charge(
        any_engine, charge("j-much", 1, charged_cost_micros=3_000_000, charged_price_per_hour_micros=3_000_000)
    )
    # j-fair: charged what it quoted.
    settle_job(any_engine, "j-fair", held=5_000_000, captured=2_000_000)
    record_provider_charge(
        any_engine,
        charge("j-fair", 1, charged_cost_micros=2_000_000, charged_price_per_hour_micros=2_000_000),
    )

    report = variance_report(any_engine)

    assert [job.job_id for job in report] == ["j-much", "j-over"]
    much, over = report
    assert much.variance_micros == 1_000_000
    assert much.billed_micros == 1_000_000
    assert much.margin_micros == -2_000_000
    assert much.providers == ["runpod"]
    assert over.segments == 2
    assert over.providers == ["aws", "runpod"]
    assert over.quoted_cost_micros == 4_000_000
    assert over.charged_cost_micros == 4_500_000
    assert over.billed_micros == 4_000_000
    assert over.margin_micros == -500_000
    assert verify_ledger(any_engine).ok


def test_variance_report_filters(any_engine):
    record_provider_charge(any_engine, charge("j-a", 1))
    record_provider_charge(any_engine, charge("j-b", 1, provider="aws"))
    record_provider_charge(
        any_engine,
        charge("j-c", 1, charged_cost_micros=1_000_000, charged_price_per_hour_micros=1_000_000),
    )

    assert [job.job_id for job in variance_report(any_engine, provider="aws")] == ["j-b"]
    assert [job.job_id for job in variance_report(any_engine, limit=1)] == ["j-a"]
    assert [job.job_id for job in variance_report(any_engine, include_all=True)] == [
        "j-a",
        "j-b",
        "j-c",
    ]
    future = datetime.now(UTC) + timedelta(days=1)
    assert variance_report(any_engine, since=future) == []
    unsettled = variance_report(any_engine, provider="aws")[0]
    assert unsettled.billed_micros == 0
    assert dataclasses.asdict(unsettled)["tenant_id"] == "acme"

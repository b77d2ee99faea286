"""`GET /v1/account/transactions` on a PostgreSQL ledger: entries, pages and query validation."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest

import ledger
from tests.api.conftest import bearer, new_tenant

CREDIT = 1_000_000
URL = "/v1/account/transactions"


def entry(
    transaction_id: int,
    kind: str,
    job_id: str | None,
    amount: str,
    held_change: str,
    balance_after: str,
    reason: str = "",
) -> dict:
    """The expected entry, without `createdAt`, which the test checks apart."""
    return {
        "transactionId": transaction_id,
        "type": kind,
        "jobId": job_id,
        "amount": amount,
        "heldChange": held_change,
        "reason": reason,
        "balanceAfter": balance_after,
    }


def without_created_at(entries: list[dict]) -> list[dict]:
    return [
        {name: value for name, value in item.items() if name != "createdAt"} for item in entries
    ]


@pytest.fixture
def history(billing_engine) -> tuple[str, list[dict]]:
    """A tenant with one transaction of every type, and its expected entries, newest first."""
    engine = billing_engine
    tenant = new_tenant()
    job_1 = f"job-{uuid.uuid4().hex}"
    job_2 = f"job-{uuid.uuid4().hex}"
    expiry = datetime.now(UTC) + timedelta(hours=1)

    ids = [
        ledger.grant(
            engine, tenant_id=tenant, amount_micros=10 * CREDIT, key="g1", reason="signup"
        ).transaction_id,
        ledger.hold(
            engine, tenant_id=tenant, job_id=job_1, amount_micros=4 * CREDIT, key="h1"
        ).transaction_id,
        ledger.capture(
            engine, tenant_id=tenant, job_id=job_1, amount_micros=1_500_000, key="c1"
        ).transaction_id,
        ledger.release(
            engine, tenant_id=tenant, job_id=job_1, amount_micros=2_500_000, key="r1"
        ).transaction_id,
        ledger.refund(
            engine,
            tenant_id=tenant,
            job_id=job_1,
            amount_micros=500_000,
            key="f1",
            reason="late start",
        ).transaction_id,
        ledger.grant(
            engine,
            tenant_id=tenant,
            amount_micros=2 * CREDIT,
            key="g2",
            reason="promo",
            expires_at=expiry,
        ).transaction_id,
        # The hold draws on the promo grant first, because it expires first.
        ledger.hold(
            engine, tenant_id=tenant, job_id=job_2, amount_micros=1 * CREDIT, key="h2"
        ).transaction_id,
    ]
    expired = [
        posted for posted in ledger.expire_grants(engine, now=expiry) if posted.tenant_id == tenant
    ]
    assert len(expired) == 1
    ids.append(expired[0].transaction_id)

    expected = [
        entry(ids[0], "grant", None, "10.000000", "0.000000", "10.000000", "signup"),
        entry(ids[1], "hold", job_1, "-4.000000", "4.000000", "6.000000"),
        entry(ids[2], "capture", job_1, "0.000000", "-1.500000", "6.000000"),
        entry(ids[3], "release", job_1, "2.500000", "-2.500000", "8.500000"),
        entry(ids[4], "refund", job_1, "0.500000", "0.000000", "9.000000", "late start"),
        entry(ids[5], "grant", None, "2.000000", "0.000000", "11.000000", "promo"),
        entry(ids[6], "hold", job_2, "-1.000000", "1.000000", "10.000000"),
        entry(
            ids[7],
            "expire",
            None,
            "-1.000000",
            "0.000000",
            "9.000000",
            f"unspent credits of grant {ids[5]} expired",
        ),
    ]
    return tenant, expected[::-1]


async def test_statement_pages_through_every_entry(billing_client, history):
    tenant, expected = history
    headers = bearer(tenant, "billing:read")

    first = await billing_client.get(URL, params={"limit": 3}, headers=headers)
    second = await billing_client.get(
        URL, params={"limit": 3, "cursor": first.json()["nextCursor"]}, headers=headers
    )
    third = await billing_client.get(
        URL, params={"limit": 3, "cursor": second.json()["nextCursor"]}, headers=headers
    )

    assert first.status_code == 200
    assert second.status_code == 200
    assert third.status_code == 200
    assert without_created_at(first.json()["entries"]) == expected[0:3]
    assert without_created_at(second.json()["entries"]) == expected[3:6]
    assert without_created_at(third.json()["entries"]) == expected[6:8]
    assert first.json()["nextCursor"] is not None
    assert second.json()["nextCursor"] is not None
    assert third.json()["nextCursor"] is None


async def test_statement_default_page_holds_all_entries(billing_client, history):
    tenant, expected = history

    response = await billing_client.get(URL, headers=bearer(tenant, "billing:read"))

    page = response.json()
    assert response.status_code == 200
    assert without_created_at(page["entries"]) == expected
    assert page["nextCursor"] is None


async def test_statement_created_at_is_utc_and_newest_first(billing_client, history):
    tenant, _ = history

    response = await billing_client.get(URL, headers=bearer(tenant, "billing:read"))

    times = [datetime.fromisoformat(item["createdAt"]) for item in response.json()["entries"]]
    assert all(time.utcoffset() == timedelta(0) for time in times)
    assert times == sorted(times, reverse=True)


async def test_statement_shows_only_own_tenant(billing_client, history):

    response = await billing_client.get(URL, headers=bearer(new_tenant(), "billing:read"))

    assert response.status_code == 200
    assert response.json() == {"entries": [], "nextCursor": None}


async def test_statement_balance_matches_account(billing_client, history):
    tenant, expected = history

    account = await billing_client.get("/v1/account", headers=bearer(tenant, "billing:read"))

    assert account.json() == {
        "tenantId": tenant,
        "available": expected[0]["balanceAfter"],
        "held": "1.000000",
        "spent": "1.000000",
    }


@pytest.mark.parametrize(
    "cursor",
    [
        "not-a-cursor",
        "",
        "djE6",  # "v1:" without an id
        "djE6LTE",  # "v1:-1"
        "djI6NQ",  # "v2:5"
        "djE6wrI",  # "v1:" and a superscript two, which str.isdigit accepts
        "djE6OTk5OTk5OTk5OTk5OTk5OTk5OTk5",  # "v1:" and an id above 64 bits
        "\x00",
    ],
)
async def test_statement_with_invalid_cursor_returns_422(billing_client, cursor):
    response = await billing_client.get(
        URL, params={"cursor": cursor}, headers=bearer(new_tenant(), "billing:read")
    )

    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "in": "query",
            "field": "cursor",
            "detail": "invalid cursor: pass the nextCursor of a previous page unchanged,"
            " or omit it",
            "type": "value_error",
        }
    ]


@pytest.mark.parametrize(
    ("limit", "error_type"),
    [
        ("0", "greater_than_equal"),
        ("201", "less_than_equal"),
        ("-1", "greater_than_equal"),
        ("1.5", "int_parsing"),
        ("abc", "int_parsing"),
        ("", "int_parsing"),
        pytest.param("9" * 5000, "int_parsing_size", id="5000-digits"),
    ],
)
async def test_statement_with_invalid_limit_returns_422(billing_client, limit, error_type):
    response = await billing_client.get(
        URL, params={"limit": limit}, headers=bearer(new_tenant(), "billing:read")
    )

    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["in"], error["field"]) == ("query", "limit")
    assert error["type"] == error_type


async def test_statement_accepts_limit_of_200(billing_client, history):
    tenant, expected = history

    response = await billing_client.get(
        URL, params={"limit": 200}, headers=bearer(tenant, "billing:read")
    )

    assert response.status_code == 200
    assert len(response.json()["entries"]) == len(expected)

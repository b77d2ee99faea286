"""`POST /v1/admin/tenants/{tenant}/grants` on a PostgreSQL ledger."""

import uuid

import pytest

import ledger
from tests.api.conftest import bearer, new_tenant

ADMIN = bearer("operator", "billing:admin")


def grant_url(tenant: str) -> str:
    return f"/v1/admin/tenants/{tenant}/grants"


def with_key(key: str) -> dict[str, str]:
    return {**ADMIN, "Idempotency-Key": key}


def new_key() -> str:
    return f"grant-{uuid.uuid4().hex}"


async def test_grant_posts_credits_and_returns_transaction(billing_client, billing_engine):
    tenant = new_tenant()

    response = await billing_client.post(
        grant_url(tenant),
        json={"amount": "12.5", "reason": "signup bonus"},
        headers=with_key("signup"),
    )

    assert response.status_code == 201
    body = response.json()
    assert body == {
        "transactionId": body["transactionId"],
        "tenantId": tenant,
        "type": "grant",
        "jobId": None,
        "amount": "12.500000",
        "reason": "signup bonus",
        "expiresAt": None,
        "key": "signup",
        "replayed": False,
    }
    assert ledger.get_balances(billing_engine, tenant).available_micros == 12_500_000


async def test_grant_shows_on_tenant_statement(billing_client):
    tenant = new_tenant()

    granted = await billing_client.post(
        grant_url(tenant), json={"amount": 3, "reason": "promo"}, headers=with_key(new_key())
    )
    statement = await billing_client.get(
        "/v1/account/transactions", headers=bearer(tenant, "billing:read")
    )

    (entry,) = statement.json()["entries"]
    assert entry["transactionId"] == granted.json()["transactionId"]
    assert entry["type"] == "grant"
    assert entry["amount"] == "3.000000"
    assert entry["reason"] == "promo"
    assert entry["balanceAfter"] == "3.000000"


async def test_grant_json_fraction_is_exact(billing_client, billing_engine):
    tenant = new_tenant()

    response = await billing_client.post(
        grant_url(tenant),
        content=b'{"amount": 0.1, "reason": "exact"}',
        headers={**with_key(new_key()), "Content-Type": "application/json"},
    )

    assert response.status_code == 201
    assert response.json()["amount"] == "0.100000"
    assert ledger.get_balances(billing_engine, tenant).available_micros == 100_000


async def test_grant_replay_returns_200_and_grants_once(billing_client, billing_engine):
    tenant = new_tenant()
    key = new_key()

    first = await billing_client.post(
        grant_url(tenant), json={"amount": "5", "reason": "promo"}, headers=with_key(key)
    )
    # The same amount spelt differently is the same request.
    second = await billing_client.post(
        grant_url(tenant), json={"amount": 5.000000, "reason": "promo"}, headers=with_key(key)
    )

    assert first.status_code == 201
    assert second.status_code == 200
    assert second.json() == {**first.json(), "replayed": True}
    assert ledger.get_balances(billing_engine, tenant).available_micros == 5_000_000


async def test_grant_with_expiry_returns_it_in_utc(billing_client):
    tenant = new_tenant()
    key = new_key()
    body = {"amount": "1", "reason": "trial", "expiresAt": "2040-01-01T05:30:00+05:30"}

    first = await billing_client.post(grant_url(tenant), json=body, headers=with_key(key))
    # The same instant in another offset replays the grant.
    replay_body = {**body, "expiresAt": "2040-01-01T00:00:00Z"}
    second = await billing_client.post(grant_url(tenant), json=replay_body, headers=with_key(key))

    assert first.status_code == 201
    assert first.json()["expiresAt"] == "2040-01-01T00:00:00Z"
    assert second.status_code == 200
    assert second.json()["transactionId"] == first.json()["transactionId"]


@pytest.mark.parametrize(
    ("changed", "location", "message"),
    [
        (
            {"amount": "6"},
            ["body", "amount"],
            (
                "Idempotency-Key 'same-key' was already used with amount 5.000000; send the"
                " same amount to retry, or use a new key"
            ),
        ),
        (
            {"reason": "other"},
            ["body", "reason"],
            (
                "Idempotency-Key 'same-key' was already used with reason 'promo'; send the"
                " same reason to retry, or use a new key"
            ),
        ),
        (
            {"expiresAt": "2040-01-01T00:00:00Z"},
            ["body", "expiresAt"],
            (
                "Idempotency-Key 'same-key' was already used with expiresAt null; send the"
                " same expiresAt to retry, or use a new key"
            ),
        ),
    ],
)
async def test_grant_key_reused_with_other_body_returns_422(
    billing_client, billing_engine, changed, location, message
):
    tenant = new_tenant()
    body = {"amount": "5", "reason": "promo"}
    await billing_client.post(grant_url(tenant), json=body, headers=with_key("same-key"))

    response = await billing_client.post(
        grant_url(tenant), json={**body, **changed}, headers=with_key("same-key")
    )

    assert response.status_code == 422
    assert response.json()["errors"] == [
        {"in": location[0], "field": location[1], "detail": message, "type": "value_error"}
    ]
    assert ledger.get_balances(billing_engine, tenant).available_micros == 5_000_000


async def test_grant_with_hold_key_returns_422(billing_client, billing_engine):
    tenant = new_tenant()
    ledger.grant(billing_engine, tenant_id=tenant, amount_micros=2_000_000, key="seed")
    ledger.hold(
        billing_engine,
        tenant_id=tenant,
        job_id=f"job-{uuid.uuid4().hex}",
        amount_micros=1_000_000,
        key="job-hold",
    )

    response = await billing_client.post(
        grant_url(tenant), json={"amount": "1", "reason": "x"}, headers=with_key("job-hold")
    )

    assert response.status_code == 422
    assert response.json()["errors"] == [
        {
            "in": "header",
            "field": "Idempotency-Key",
            "detail": "Idempotency-Key 'job-hold' was already used for a transaction with"
            " kind 'hold'; use a new key",
            "type": "value_error",
        }
    ]


async def test_grant_without_key_returns_422(billing_client):
    response = await billing_client.post(
        grant_url(new_tenant()), json={"amount": "1", "reason": "x"}, headers=ADMIN
    )

    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["in"], error["field"]) == ("header", "Idempotency-Key")
    assert error["type"] == "missing"


@pytest.mark.parametrize(
    ("key", "error_type"),
    [
        (b"expire/1", "value_error"),
        (b"", "string_pattern_mismatch"),
        (b"x" * 256, "string_pattern_mismatch"),
        ("caf\u00e9".encode("latin-1"), "string_pattern_mismatch"),
        (b"tab\tkey", "string_pattern_mismatch"),
    ],
)
async def test_grant_with_invalid_key_returns_422(billing_client, key, error_type):
    response = await billing_client.post(
        grant_url(new_tenant()),
        json={"amount": "1", "reason": "x"},
        headers={**ADMIN, "Idempotency-Key": key},
    )

    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["in"], error["field"]) == ("header", "Idempotency-Key")
    assert error["type"] == error_type


async def test_grant_to_platform_tenant_returns_422(billing_client):
    response = await billing_client.post(
        grant_url("platform"), json={"amount": "1", "reason": "x"}, headers=with_key(new_key())
    )

    assert response.status_code == 422
    assert response.json() == {
        "type": "https://compute-as-credit.dev/problems/validation-error",
        "title": "Invalid request",
        "status": 422,
        "detail": "tenant: 'platform' is the platform's own tenant id, not a customer's",
        "instance": "/v1/admin/tenants/platform/grants",
        "errors": [
            {
                "in": "path",
                "field": "tenant",
                "detail": "'platform' is the platform's own tenant id, not a customer's",
                "type": "value_error",
            }
        ],
    }


@pytest.mark.parametrize("tenant", ["a%00b", "a%0Ab", "x" * 256])
async def test_grant_to_invalid_tenant_returns_422(billing_client, tenant):
    response = await billing_client.post(
        grant_url(tenant), json={"amount": "1", "reason": "x"}, headers=with_key(new_key())
    )

    assert response.status_code == 422
    (error,) = response.json()["errors"]
    assert (error["in"], error["field"]) == ("path", "tenant")

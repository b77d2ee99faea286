"""`/v1/account/alerts/low-balance` on the billing tests' PostgreSQL ledger."""

import pytest

import ledger
from ledger.alerts import check_low_balance, get_low_balance_alert
from tests.api.conftest import bearer, new_tenant

URL = "/v1/account/alerts/low-balance"


def alert_body(threshold="5", callback_url="https://example.com/hooks") -> dict:
    return {"threshold": threshold, "callbackUrl": callback_url}


async def test_put_alert_then_read_it(billing_client):
    headers = bearer(new_tenant(), "billing:read")

    put = await billing_client.put(URL, json=alert_body("5.5"), headers=headers)
    got = await billing_client.get(URL, headers=headers)

    assert put.status_code == 200
    assert put.json() == {
        "threshold": "5.500000",
        "callbackUrl": "https://example.com/hooks",
        "armed": True,
    }
    assert got.json() == put.json()


async def test_delete_alert_then_not_found(billing_client):
    headers = bearer(new_tenant(), "billing:read")
    await billing_client.put(URL, json=alert_body(), headers=headers)

    deleted = await billing_client.delete(URL, headers=headers)
    again = await billing_client.delete(URL, headers=headers)
    got = await billing_client.get(URL, headers=headers)

    assert deleted.status_code == 204
    assert again.status_code == 404
    assert got.status_code == 404


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (alert_body(threshold="0"), "threshold"),
        (alert_body(threshold="NaN"), "threshold"),
        (alert_body(threshold="1.0000001"), "threshold"),
        (alert_body(callback_url="ftp://example.com"), "callbackUrl"),
        ({"threshold": "5"}, "callbackUrl"),
    ],
)
async def test_put_invalid_alert_names_field(billing_client, body, field):
    tenant = new_tenant()

    response = await billing_client.put(URL, json=body, headers=bearer(tenant, "billing:read"))

    assert response.status_code == 422
    assert field in response.text


async def test_grant_rearms_alert(billing_client, billing_engine):
    tenant = new_tenant()
    ledger.grant(billing_engine, tenant_id=tenant, amount_micros=2_000_000, key="g1")
    await billing_client.put(URL, json=alert_body("5"), headers=bearer(tenant, "billing:read"))
    ledger.hold(billing_engine, tenant_id=tenant, job_id=f"{tenant}-j", amount_micros=1, key="h")
    assert check_low_balance(billing_engine, tenant) is not None

    response = await billing_client.post(
        f"/v1/admin/tenants/{tenant}/grants",
        json={"amount": "10", "reason": "top-up"},
        headers={**bearer("operator", "billing:admin"), "Idempotency-Key": f"{tenant}-top-up"},
    )

    assert response.status_code == 201
    assert get_low_balance_alert(billing_engine, tenant).armed is True

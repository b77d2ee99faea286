"""`GET /v1/account` against a real ledger in a SQLite file."""

import ledger
from api.app import create_app
from tests.api.conftest import UnusedTemporalClient, asgi_client, bearer


async def test_account_returns_balances_in_credits(settings):
    ledger.upgrade(settings.database_url)
    engine = ledger.create_ledger_engine(settings.database_url)
    ledger.grant(engine, tenant_id="tenant-a", amount_micros=10_500_000, key="grant-1")
    ledger.hold(engine, tenant_id="tenant-a", job_id="job-1", amount_micros=2_000_001, key="hold-1")
    ledger.capture(engine, tenant_id="tenant-a", job_id="job-1", amount_micros=1, key="capture-1")
    engine.dispose()
    app = create_app(settings, temporal_client=UnusedTemporalClient())

    async with app.router.lifespan_context(app), asgi_client(app) as client:
        response = await client.get("/v1/account", headers=bearer("tenant-a", "billing:read"))

    assert response.status_code == 200
    assert response.json() == {
        "tenantId": "tenant-a",
        "available": "8.499999",
        "held": "2.000000",
        "spent": "0.000001",
    }


async def test_account_of_new_tenant_is_all_zeros(settings):
    ledger.upgrade(settings.database_url)
    app = create_app(settings, temporal_client=UnusedTemporalClient())

    async with app.router.lifespan_context(app), asgi_client(app) as client:
        response = await client.get("/v1/account", headers=bearer("tenant-new", "billing:read"))

    assert response.status_code == 200
    assert response.json() == {
        "tenantId": "tenant-new",
        "available": "0.000000",
        "held": "0.000000",
        "spent": "0.000000",
    }


async def test_account_before_startup_returns_503(api_client):
    response = await api_client.get("/v1/account", headers=bearer("tenant-a", "billing:read"))

    assert response.status_code == 503
    assert response.json() == {
        "type": "https://compute-as-credit.dev/problems/service-unavailable",
        "title": "Service Unavailable",
        "status": 503,
        "detail": "the ledger is not connected",
        "instance": "/v1/account",
    }

"""`GET /v1/admin/variance` on a PostgreSQL ledger of its own, so the listed jobs are known."""

import uuid
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

import ledger
from api.app import create_app
from config import Settings
from ledger import ProviderCharge
from tests.api.conftest import SECRET, UnusedTemporalClient, asgi_client, bearer
from tests.conftest import fresh_pg_database

ADMIN = bearer("operator", "billing:admin")


@pytest.fixture(scope="module")
def variance_engine() -> Iterator:
    with fresh_pg_database() as url:
        ledger.upgrade(url)
        engine = ledger.create_ledger_engine(url)
        seed(engine)
        yield url
        engine.dispose()


@pytest.fixture(scope="module")
async def client(variance_engine, tmp_path_factory) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(
        jwt_secret=SECRET,
        data_dir=tmp_path_factory.mktemp("variance"),
        DATABASE_URL=variance_engine,
    )
    app = create_app(settings, temporal_client=UnusedTemporalClient())
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        yield client


def charge(job_id: str, provider: str, quoted: int, charged: int) -> ProviderCharge:
    return ProviderCharge(
        job_id=job_id,
        tenant_id="acme",
        attempt=1,
        provider=provider,
        instance_id=f"i-{job_id}",
        billable_seconds=3600,
        quoted_price_per_hour_micros=quoted,
        quoted_cost_micros=quoted,
        charged_price_per_hour_micros=charged,
        charged_cost_micros=charged,
        reported=True,
    )


def seed(engine) -> None:
    ledger.grant(engine, tenant_id="acme", amount_micros=100_000_000, key="g")
    for job_id, provider, quoted, charged in [
        ("job-over", "runpod", 2_000_000, 2_500_000),
        ("job-way-over", "aws", 1_000_000, 3_000_000),
        ("job-fair", "runpod", 1_500_000, 1_500_000),
    ]:
        ledger.hold(engine, tenant_id="acme", job_id=job_id, amount_micros=5_000_000, key=f"{job_id}/h")
        ledger.capture(engine, tenant_id="acme", job_id=job_id, amount_micros=quoted, key=f"{job_id}/c")
        ledger.record_provider_charge(engine, charge(job_id, provider, quoted, charged))


async def test_variance_lists_overcharged_jobs(client):
    response = await client.get("/v1/admin/variance", headers=ADMIN)

    assert response.status_code == 200
    body = response.json()
    assert [job["jobId"] for job in body["jobs"]] == ["job-way-over", "job-over"]
    way_over = body["jobs"][0]
    assert way_over["tenantId"] == "acme"
    assert way_over["providers"] == ["aws"]
    assert way_over["segments"] == 1
    assert way_over["quotedCost"] == "1.000000"
    assert way_over["chargedCost"] == "3.000000"
    assert way_over["billed"] == "1.000000"
    assert way_over["variance"] == "2.000000"
    assert way_over["margin"] == "-2.000000"
    assert body["totalVariance"] == "2.500000"
    assert body["totalMargin"] == "-2.500000"


async def test_variance_all_includes_fair_jobs(client):
    response = await client.get("/v1/admin/variance", params={"all": "true"}, headers=ADMIN)

    jobs = response.json()["jobs"]
    assert [job["jobId"] for job in jobs] == ["job-way-over", "job-over", "job-fair"]
    assert jobs[2]["margin"] == "0.000000"


async def test_variance_filters_by_provider(client):
    response = await client.get("/v1/admin/variance", params={"provider": "runpod"}, headers=ADMIN)

    assert [job["jobId"] for job in response.json()["jobs"]] == ["job-over"]


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"since": "2026-01-01T00:00:00"}, "since"),
        ({"since": "yesterday"}, "since"),
        ({"since": "-2969"}, "since"),
        ({"limit": "0"}, "limit"),
        ({"limit": "1001"}, "limit"),
    ],
)
async def test_variance_invalid_query_names_field(client, params, field):
    response = await client.get("/v1/admin/variance", params=params, headers=ADMIN)

    assert response.status_code == 422
    assert field in response.text


async def test_variance_requires_admin_scope(client):
    response = await client.get(
        "/v1/admin/variance", headers=bearer(f"t-{uuid.uuid4().hex}", "billing:read")
    )

    assert response.status_code == 403

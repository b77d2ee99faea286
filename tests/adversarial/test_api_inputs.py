"""Requests that get a 500 where a 4xx naming the field is due, and an idempotency
fingerprint that misses fields of the job."""

from collections.abc import AsyncIterator

import httpx
import pytest

import ledger
from api.app import create_app
from api.idempotency import request_hash
from api.models import SubmitJobRequest
from config import Settings
from tests.api.conftest import SECRET, UnusedTemporalClient, asgi_client, bearer
from tests.conftest import fresh_pg_database

JOB = {
    "agentSpec": {"image": "alpine", "cmd": ["echo", "hi"]},
    "resourceHint": {"gpuType": "A100"},
    "maxBudget": "1",
}


@pytest.fixture
async def api_client(tmp_path) -> AsyncIterator[httpx.AsyncClient]:
    """Client of an app whose Temporal client fails the test if it is used."""
    settings = Settings(jwt_secret=SECRET, data_dir=tmp_path)
    app = create_app(settings, temporal_client=UnusedTemporalClient())
    async with asgi_client(app) as client:
        yield client


@pytest.fixture(scope="module")
async def ledger_client(tmp_path_factory) -> AsyncIterator[httpx.AsyncClient]:
    """Client of an app started up on a ledger of its own; Temporal fails the test if used."""
    with fresh_pg_database() as url:
        ledger.upgrade(url)
        settings = Settings(
            jwt_secret=SECRET,
            data_dir=tmp_path_factory.mktemp("adversarial-api"),
            DATABASE_URL=url,
        )
        app = create_app(settings, temporal_client=UnusedTemporalClient())
        async with app.router.lifespan_context(app), asgi_client(app) as client:
            yield client


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/jobs", '{"agentSpec": {"image": "\\ud800", "cmd": ["echo"]}, "maxBudget": "1"}'),
        ("/v1/jobs", '{"agentSpec": {"image": "alpine", "cmd": ["\\udfff"]}, "maxBudget": "1"}'),
        ("/v1/jobs/job-1/cancel", '{"reason": "\\ud800"}'),
    ],
)
async def test_lone_surrogate_in_body_returns_422(api_client, path, body):
    """JSON may escape a lone UTF-16 surrogate. Pydantic rejects it, but the 422 problem
    echoes the rejected input, which cannot be encoded as UTF-8, so the client gets a 500."""
    headers = {**bearer("tenant-a", "jobs:write"), "Content-Type": "application/json"}

    response = await api_client.post(path, content=body, headers=headers)

    assert response.status_code == 422, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_low_balance_alert_with_nul_returns_422(ledger_client):
    """A NUL character in the alert's callbackUrl passes validation and reaches PostgreSQL,
    which rejects it, so any tenant with billing:read gets a 500."""
    body = {"threshold": "1", "callbackUrl": "http://127.0.0.1:9/hook\u0000"}

    response = await ledger_client.put(
        "/v1/account/alerts/low-balance", json=body, headers=bearer("tenant-a", "billing:read")
    )

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "callbackUrl"


async def test_variance_with_nul_provider_returns_422(ledger_client):
    """The `provider` filter of the variance report goes to PostgreSQL unchecked, and a NUL
    character in it makes the query fail with a 500."""
    response = await ledger_client.get(
        "/v1/admin/variance", params={"provider": "fake\u0000"}, headers=bearer("ops", "billing:admin")
    )

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "provider"


@pytest.mark.parametrize(
    ("field", "first", "retry"),
    [
        ("policy", "cheapest", "fastest"),
        ("providers", ["fake"], ["runpod"]),
        ("maxPricePerHour", "100", "0.5"),
    ],
)
def test_request_hash_changes_with_resource_hint(field, first, retry):
    """README: the same Idempotency-Key with a different request is a 422. The fingerprint
    leaves out the policy, the allowed providers and the price limit, so a retry that changes
    any of them gets 200 and the first job, placed under the first request's rules."""
    first_request = SubmitJobRequest.model_validate(
        {**JOB, "resourceHint": {"gpuType": "A100", field: first}}
    )
    retried_request = SubmitJobRequest.model_validate(
        {**JOB, "resourceHint": {"gpuType": "A100", field: retry}}
    )

    assert request_hash(retried_request) != request_hash(first_request), (
        f"requests that differ in resourceHint.{field} have the same fingerprint"
    )

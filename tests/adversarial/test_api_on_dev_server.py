"""`/v1/jobs` against a Temporal dev server, which enforces the search attribute limits that
the time-skipping test server does not."""

import asyncio
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

import ledger
from activities.jobs import JobActivities
from api.app import create_app
from config import Settings
from providers.fake import FakeProvider
from tests.api.conftest import SECRET, asgi_client, bearer
from tests.conftest import start_dev_server_env
from tests.support.webhook_receiver import webhook_receiver
from worker.main import build_worker

CREDIT = 1_000_000
JOB_SCOPES = ("jobs:read", "jobs:write")


@pytest.fixture(scope="module")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server_env()
    yield env
    await env.shutdown()


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory, pg_url) -> Settings:
    return Settings(
        jwt_secret=SECRET,
        data_dir=tmp_path_factory.mktemp("adversarial-dev"),
        task_queue=f"adversarial-{uuid.uuid4().hex}",
        DATABASE_URL=pg_url,
    )


@pytest.fixture(scope="module")
async def client(dev_env, module_settings, ledger_engine) -> AsyncIterator[httpx.AsyncClient]:
    """Client of the API with a worker whose `fast` fake provider finishes A100 jobs one
    second after launch."""
    provider = FakeProvider(
        "fast", price_per_hour_micros=3_600_000, gpu_types=["A100"], start_seconds=0, run_seconds=1
    )
    activities = JobActivities(
        providers={provider.name: provider}, ledger_engine=ledger_engine, poll_interval_seconds=1
    )
    app = create_app(module_settings, temporal_client=dev_env.client)
    async with build_worker(dev_env.client, module_settings, activities), asgi_client(app) as http:
        yield http


async def test_submit_gpu_type_too_long_returns_422(client, tenant):
    """Temporal rejects a GpuType search attribute this long (INVALID_ARGUMENT), and the API
    returns that as 503 "retry later", so a retry can never succeed. `GET /v1/jobs` caps
    gpuType at 255 characters and `GET /v1/quotes` at 64, but the submit body has no cap."""
    body = {
        "agentSpec": {"image": "alpine", "cmd": ["true"]},
        "resourceHint": {"gpuType": "A" * 3000},
        "maxBudget": "1",
    }

    response = await client.post("/v1/jobs", json=body, headers=bearer(tenant, *JOB_SCOPES))

    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "resourceHint.gpuType"


async def test_cancel_job_ended_with_webhook_pending_returns_409(client, ledger_engine, tenant):
    """README: cancel returns 409 once the job has ended. A job whose receiver rejects its
    webhooks keeps its workflow open after it SUCCEEDED, and cancel returns 202 instead."""
    ledger.grant(ledger_engine, tenant_id=tenant, amount_micros=10 * CREDIT, key="grant")
    headers = bearer(tenant, *JOB_SCOPES)

    with webhook_receiver() as receiver:
        receiver.reject_with = 503
        body = {
            "agentSpec": {"image": "alpine", "cmd": ["true"]},
            "resourceHint": {"gpuType": "A100"},
            "maxBudget": "1",
            "callbackUrl": receiver.url,
        }
        job_id = (await client.post("/v1/jobs", json=body, headers=headers)).json()["jobId"]
        status = await _wait_for_final_status(client, job_id, headers)
        response = await client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)

    assert status == "SUCCEEDED"
    assert response.status_code == 409, response.text


async def _wait_for_final_status(client: httpx.AsyncClient, job_id: str, headers) -> str:
    for _ in range(100):
        status = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()["status"]
        if status in ("SUCCEEDED", "FAILED", "CANCELLED"):
            return status
        await asyncio.sleep(0.2)
    raise AssertionError(f"job {job_id} did not end within 20 s")

"""`/v1/jobs` with the real `JobWorkflow` and activities on the time-skipping test server.

The test server skips time on its own only while a client waits on the handle that
`start_workflow` returned, and the API keeps that handle to itself. So a test that needs a job
to finish calls `finish`, which skips past the job's run time and then waits for its result.
"""

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

import ledger
from activities.jobs import JobActivities
from api.app import create_app
from config import Settings
from providers.fake import FakeProvider
from tests.api.conftest import SECRET, asgi_client, bearer
from tests.conftest import TEST_SERVER
from worker.main import build_worker

CREDIT = 1_000_000

# 2.5 credits per GPU-hour for 10 simulated minutes: a one-GPU job costs 0.416667 credits
# (per-second billing, rounded up to the micro-credit by the ledger's metering).
PRICE_PER_HOUR_MICROS = 2_500_000
RUN_SECONDS = 600


@pytest.fixture(scope="module")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A test server of this module's own.

    NOTE: sharing the session-wide server with tests/workflows made the later workflow tests
    hang. The likely cause, not yet checked here, is that concurrent result calls interleave the
    server's automatic time skipping, so this module keeps its own server.
    """
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=TEST_SERVER)
    yield env
    await env.shutdown()


@pytest.fixture(scope="module")
def module_settings(tmp_path_factory) -> Settings:
    return Settings(
        jwt_secret=SECRET,
        data_dir=tmp_path_factory.mktemp("api-jobs"),
        task_queue=f"api-jobs-{uuid.uuid4().hex}",
        providers=["fake"],
    )


@pytest.fixture(scope="module")
def ledger_engine(module_settings):
    ledger.upgrade(module_settings.database_url)
    engine = ledger.create_ledger_engine(module_settings.database_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
async def job_worker(time_env, module_settings, ledger_engine) -> AsyncIterator[None]:
    provider = FakeProvider(
        price_per_hour_micros=PRICE_PER_HOUR_MICROS,
        gpu_types=["A100"],
        start_seconds=0,
        run_seconds=RUN_SECONDS,
    )
    activities = JobActivities(
        providers={provider.name: provider}, ledger_engine=ledger_engine, poll_interval_seconds=60
    )
    async with build_worker(time_env.client, module_settings, activities):
        yield


@pytest.fixture(scope="module")
async def client(time_env, module_settings, job_worker) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(module_settings, temporal_client=time_env.client)
    async with app.router.lifespan_context(app), asgi_client(app) as http:
        yield http


@pytest.fixture
def tenant(ledger_engine) -> str:
    """A new tenant with 10 credits."""
    name = f"tenant-{uuid.uuid4().hex[:12]}"
    ledger.grant(ledger_engine, tenant_id=name, amount_micros=10 * CREDIT, key="test-grant")
    return name


def job_request(max_budget: str = "5") -> dict:
    return {
        "agentSpec": {"image": "python:3.11-slim", "cmd": "python train.py"},
        "resourceHint": {"gpuType": "A100"},
        "maxBudget": max_budget,
    }


async def finish(env: WorkflowEnvironment, job_id: str) -> None:
    """Skip simulated time past the job's end and wait until its workflow completes."""
    await env.sleep(timedelta(seconds=RUN_SECONDS + 300))
    await env.client.get_workflow_handle(job_id).result()


async def test_submitted_job_reads_back_settled(client, time_env, tenant):
    headers = bearer(tenant, "jobs:read", "jobs:write")

    submitted = await client.post("/v1/jobs", json=job_request(), headers=headers)
    job_id = submitted.json()["jobId"]
    await finish(time_env, job_id)
    response = await client.get(f"/v1/jobs/{job_id}", headers=headers)

    assert submitted.status_code == 201
    assert response.status_code == 200
    job = response.json()
    assert job["jobId"] == job_id
    assert job["status"] == "SUCCEEDED"
    assert job["failureReason"] == ""
    assert job["provider"] == "fake"
    assert job["quote"] == {
        "provider": "fake",
        "instanceType": job["quote"]["instanceType"],
        "region": "sim-1",
        "gpuType": "A100",
        "gpuCount": 1,
        "spot": False,
        "pricePerHour": "2.500000",
    }
    assert job["attempts"] == 1
    assert job["exitCode"] == 0
    assert job["maxBudget"] == "5.000000"
    assert job["held"] == "0.000000"
    assert job["cost"] == "0.416667"
    assert job["captured"] == "0.416667"
    assert job["released"] == "4.583333"
    assert job["submittedAt"] is not None
    assert job["startedAt"] is not None
    assert job["finishedAt"] is not None


async def test_account_after_job_shows_cost_spent(client, time_env, tenant):
    headers = bearer(tenant, "jobs:read", "jobs:write", "billing:read")

    submitted = await client.post("/v1/jobs", json=job_request(), headers=headers)
    await finish(time_env, submitted.json()["jobId"])
    response = await client.get("/v1/account", headers=headers)

    assert response.status_code == 200
    assert response.json() == {
        "tenantId": tenant,
        "available": "9.583333",
        "held": "0.000000",
        "spent": "0.416667",
    }


async def test_admin_refund_of_settled_job_returns_its_cost(client, time_env, tenant):
    headers = bearer(tenant, "jobs:write", "billing:read")
    admin = {**bearer("operator", "billing:admin"), "Idempotency-Key": "refund-settled"}

    submitted = await client.post("/v1/jobs", json=job_request(), headers=headers)
    job_id = submitted.json()["jobId"]
    await finish(time_env, job_id)
    refund = await client.post(
        f"/v1/admin/jobs/{job_id}/refunds", json={"reason": "provider outage"}, headers=admin
    )
    account = await client.get("/v1/account", headers=headers)

    assert refund.status_code == 201
    assert refund.json()["tenantId"] == tenant
    assert refund.json()["amount"] == "0.416667"
    assert account.json() == {
        "tenantId": tenant,
        "available": "10.000000",
        "held": "0.000000",
        "spent": "0.000000",
    }


async def test_running_job_reads_live_state(client, time_env, tenant):
    headers = bearer(tenant, "jobs:read", "jobs:write")
    submitted = await client.post("/v1/jobs", json=job_request(), headers=headers)
    job_id = submitted.json()["jobId"]

    # Without a waiting client the test server keeps real time, so the job stays at its first
    # 60-second poll, with the instance launched and nothing billed yet.
    job = {}
    for _ in range(100):
        job = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
        if job["quote"] is not None:
            break
        await asyncio.sleep(0.05)
    await finish(time_env, job_id)

    assert job["status"] == "PROVISIONING"
    assert job["attempts"] == 1
    assert job["held"] == "5.000000"
    assert job["cost"] == "0.000000"
    assert job["finishedAt"] is None


async def test_retry_with_idempotency_key_returns_same_job(client, time_env, tenant):
    headers = {
        **bearer(tenant, "jobs:read", "jobs:write", "billing:read"),
        "Idempotency-Key": "retry-1",
    }

    first = await client.post("/v1/jobs", json=job_request(), headers=headers)
    retry_while_running = await client.post("/v1/jobs", json=job_request(), headers=headers)
    await finish(time_env, first.json()["jobId"])
    retry_after_finish = await client.post("/v1/jobs", json=job_request(), headers=headers)
    account = (await client.get("/v1/account", headers=headers)).json()

    assert first.status_code == 201
    assert retry_while_running.status_code == 200
    assert retry_while_running.json()["jobId"] == first.json()["jobId"]
    assert retry_after_finish.status_code == 200
    assert retry_after_finish.json() == {"jobId": first.json()["jobId"], "status": "SUCCEEDED"}
    assert account["spent"] == "0.416667"
    assert account["available"] == "9.583333"


async def test_idempotency_key_reused_for_other_request_returns_422(client, time_env, tenant):
    headers = {**bearer(tenant, "jobs:read", "jobs:write"), "Idempotency-Key": "reused"}

    first = await client.post("/v1/jobs", json=job_request("5"), headers=headers)
    second = await client.post("/v1/jobs", json=job_request("6"), headers=headers)
    await finish(time_env, first.json()["jobId"])

    assert first.status_code == 201
    assert second.status_code == 422
    assert second.json() == {"detail": "Idempotency-Key was already used with a different request"}


async def test_shared_key_across_tenants_starts_two_jobs(
    client, time_env, tenant, ledger_engine
):
    other = f"tenant-{uuid.uuid4().hex[:12]}"
    ledger.grant(ledger_engine, tenant_id=other, amount_micros=10 * CREDIT, key="test-grant")

    mine = await client.post(
        "/v1/jobs",
        json=job_request(),
        headers={**bearer(tenant, "jobs:write"), "Idempotency-Key": "shared"},
    )
    theirs = await client.post(
        "/v1/jobs",
        json=job_request(),
        headers={**bearer(other, "jobs:write"), "Idempotency-Key": "shared"},
    )
    await finish(time_env, mine.json()["jobId"])
    await finish(time_env, theirs.json()["jobId"])

    assert mine.status_code == 201
    assert theirs.status_code == 201
    assert mine.json()["jobId"] != theirs.json()["jobId"]


async def test_other_tenants_job_returns_404(client, time_env, tenant):
    headers = bearer(tenant, "jobs:write")
    submitted = await client.post("/v1/jobs", json=job_request(), headers=headers)
    job_id = submitted.json()["jobId"]
    await finish(time_env, job_id)
    stranger = bearer("someone-else", "jobs:read")

    other_tenant = await client.get(f"/v1/jobs/{job_id}", headers=stranger)
    unknown = await client.get("/v1/jobs/job-does-not-exist", headers=stranger)

    assert other_tenant.status_code == 404
    assert other_tenant.json() == {"detail": f"job {job_id} not found"}
    assert unknown.status_code == 404
    assert unknown.json() == {"detail": "job job-does-not-exist not found"}


async def test_budget_above_balance_fails_job_with_nothing_held(client, time_env, tenant):
    headers = bearer(tenant, "jobs:read", "jobs:write")

    submitted = await client.post("/v1/jobs", json=job_request("11"), headers=headers)
    job_id = submitted.json()["jobId"]
    await finish(time_env, job_id)
    job = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()

    assert job["status"] == "FAILED"
    assert job["failureReason"].startswith("insufficient credits: ")
    assert job["maxBudget"] == "11.000000"
    assert job["held"] == "0.000000"
    assert job["captured"] == "0.000000"
    assert job["quote"] is None


async def test_terminated_workflow_reads_as_failed(client, time_env, tenant):
    headers = bearer(tenant, "jobs:read", "jobs:write")
    submitted = await client.post("/v1/jobs", json=job_request(), headers=headers)
    job_id = submitted.json()["jobId"]

    await time_env.client.get_workflow_handle(job_id).terminate(reason="operator stopped it")
    job = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()

    assert job["status"] == "FAILED"
    assert job["failureReason"] == "the job's workflow was terminated"
    assert job["maxBudget"] == "5.000000"
    assert job["held"] is None
    assert job["cost"] is None
    assert job["submittedAt"] is not None
    assert job["finishedAt"] is not None


async def test_quotes_list_offers_cheapest_first(client, tenant):
    response = await client.get(
        "/v1/quotes", params={"gpuType": "A100", "gpuCount": 2}, headers=bearer(tenant, "jobs:read")
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["failedProviders"] == []
    (offer,) = body["offers"]
    assert offer["provider"] == "fake"
    assert offer["gpuType"] == "A100"
    assert offer["gpuCount"] == 2
    assert offer["spot"] is False
    assert offer["pricePerHour"] == "5.000000"


async def test_quotes_need_jobs_read(client, tenant):
    response = await client.get("/v1/quotes", headers=bearer(tenant, "billing:read"))

    assert response.status_code == 403

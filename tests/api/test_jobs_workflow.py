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
import sqlalchemy as sa
from temporalio.testing import WorkflowEnvironment

import ledger
from activities.jobs import JobActivities
from api.app import create_app
from config import Settings
from ledger.models import transactions
from providers.fake import FakeProvider
from tests.api.conftest import SECRET, asgi_client, bearer
from tests.conftest import start_time_skipping_env
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
    env = await start_time_skipping_env()
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
    assert second.json()["type"] == "https://compute-as-credit.dev/problems/validation-error"
    (error,) = second.json()["errors"]
    assert error["in"] == "header"
    assert error["field"] == "Idempotency-Key"
    assert error["detail"] == (
        "was already used with a different request; use a new key for a new job"
    )


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
    assert other_tenant.json() == {
        "type": "https://compute-as-credit.dev/problems/not-found",
        "title": "Not Found",
        "status": 404,
        "detail": f"job {job_id} not found",
        "instance": f"/v1/jobs/{job_id}",
    }
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "job job-does-not-exist not found"


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


async def test_cancel_running_job_ends_cancelled(client, time_env, tenant):
    headers = bearer(tenant, "jobs:read", "jobs:write")
    job_id = (await client.post("/v1/jobs", json=job_request(), headers=headers)).json()["jobId"]

    cancelled = await client.post(
        f"/v1/jobs/{job_id}/cancel", json={"reason": "no longer needed"}, headers=headers
    )
    await time_env.client.get_workflow_handle(job_id).result()
    job = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
    again = await client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)

    assert cancelled.status_code == 202
    assert cancelled.json()["jobId"] == job_id
    assert job["status"] == "CANCELLED"
    assert job["failureReason"] == "no longer needed"
    assert job["held"] == "0.000000"
    assert again.status_code == 409
    assert again.json()["detail"] == f"job {job_id} has already ended CANCELLED"


async def test_cancel_other_tenants_job_not_found(client, time_env, tenant):
    owner = bearer(tenant, "jobs:read", "jobs:write")
    job_id = (await client.post("/v1/jobs", json=job_request(), headers=owner)).json()["jobId"]

    response = await client.post(
        f"/v1/jobs/{job_id}/cancel", headers=bearer("someone-else", "jobs:write")
    )
    running = (await client.get(f"/v1/jobs/{job_id}", headers=owner)).json()
    await client.post(f"/v1/jobs/{job_id}/cancel", headers=owner)
    await time_env.client.get_workflow_handle(job_id).result()
    job = (await client.get(f"/v1/jobs/{job_id}", headers=owner)).json()

    assert response.status_code == 404
    assert running["status"] in ("SUBMITTED", "QUEUED", "PROVISIONING", "RUNNING")
    assert job["status"] == "CANCELLED"
    assert job["failureReason"] == "cancelled by the user"


async def wait_for_instance(client, job_id: str, headers: dict) -> None:
    for _ in range(200):
        job = (await client.get(f"/v1/jobs/{job_id}", headers=headers)).json()
        if job["quote"] is not None:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"job {job_id} launched no instance within 10 s")


async def test_job_events_list_timeline(client, time_env, tenant):
    headers = bearer(tenant, "jobs:read", "jobs:write")
    job_id = (await client.post("/v1/jobs", json=job_request(), headers=headers)).json()["jobId"]
    # Cancelled once launched, so the test needs no time skipping.
    # NOTE: after an earlier test here terminates a running workflow, the test server stopped
    # skipping time and a finish() call timed out. The cause is not checked.
    await wait_for_instance(client, job_id, headers)
    await client.post(f"/v1/jobs/{job_id}/cancel", json={"reason": "seen enough"}, headers=headers)
    await time_env.client.get_workflow_handle(job_id).result()

    response = await client.get(f"/v1/jobs/{job_id}/events", headers=headers)

    assert response.status_code == 200
    body = response.json()
    assert body["jobId"] == job_id
    events = body["events"]
    assert [(e["type"], e["status"]) for e in events] == [
        ("status", "SUBMITTED"),
        ("status", "QUEUED"),
        ("status", "PROVISIONING"),
        ("attempt", "PROVISIONING"),
        ("instance_launched", "PROVISIONING"),
        ("segment_billed", "PROVISIONING"),
        ("settled", "PROVISIONING"),
        ("status", "CANCELLED"),
    ]
    assert [e["sequence"] for e in events] == list(range(1, 9))
    assert events[4]["provider"] == "fake"
    assert events[4]["instanceId"] is not None
    assert events[7]["message"] == "the job is CANCELLED: seen enough"
    assert events[6]["amount"] == events[5]["amount"]


async def test_job_events_of_other_tenant_not_found(client, time_env, tenant):
    headers = bearer(tenant, "jobs:read", "jobs:write")
    job_id = (await client.post("/v1/jobs", json=job_request(), headers=headers)).json()["jobId"]
    await client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
    await time_env.client.get_workflow_handle(job_id).result()

    response = await client.get(f"/v1/jobs/{job_id}/events", headers=bearer("other", "jobs:read"))

    assert response.status_code == 404


@pytest.mark.parametrize(
    "url", ["ftp://example.com/hook", "/relative/hook", "https://", "not a url", 42]
)
async def test_submit_invalid_callback_url_rejected(client, tenant, url):
    body = {**job_request(), "callbackUrl": url}

    response = await client.post("/v1/jobs", json=body, headers=bearer(tenant, "jobs:write"))

    assert response.status_code == 422
    assert "callbackUrl" in response.text


async def test_webhook_secret_is_tenant_specific(client, module_settings):
    first = await client.get("/v1/webhooks/secret", headers=bearer("tenant-a", "jobs:read"))
    second = await client.get("/v1/webhooks/secret", headers=bearer("tenant-b", "jobs:read"))

    assert first.status_code == 200
    assert first.json() == {
        "tenantId": "tenant-a",
        "secret": module_settings.tenant_webhook_secret("tenant-a"),
    }
    assert second.json()["secret"] != first.json()["secret"]
    assert len(first.json()["secret"]) == 64


async def test_job_logs_show_each_instance(client, time_env, tenant):
    headers = bearer(tenant, "jobs:read", "jobs:write")
    job_id = (await client.post("/v1/jobs", json=job_request(), headers=headers)).json()["jobId"]
    await wait_for_instance(client, job_id, headers)
    await client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
    state = await time_env.client.get_workflow_handle(job_id).result()
    instance_id = state["instance_id"]

    response = await client.get(f"/v1/jobs/{job_id}/logs", headers=headers)

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    lines = response.text.splitlines()
    assert lines[0] == f"==> attempt 1: fake/{instance_id} <=="
    assert lines[1].endswith(f" fake instance {instance_id} launched for job {job_id}")
    assert lines[2].endswith(" running python train.py in python:3.11-slim")
    # Cancelled long before its simulated end, so the log ends at the termination.
    assert lines[3].endswith(" terminated")
    assert len(lines) == 4
    assert [line[:25] for line in lines[1:]] == sorted(line[:25] for line in lines[1:])


async def test_job_logs_of_other_tenant_not_found(client, time_env, tenant):
    headers = bearer(tenant, "jobs:read", "jobs:write")
    job_id = (await client.post("/v1/jobs", json=job_request(), headers=headers)).json()["jobId"]
    await client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
    await time_env.client.get_workflow_handle(job_id).result()

    response = await client.get(f"/v1/jobs/{job_id}/logs", headers=bearer("other", "jobs:read"))

    assert response.status_code == 404


@pytest.mark.parametrize("max_bytes", ["0", "1048577", "many"])
async def test_job_logs_max_bytes_out_of_range(client, tenant, max_bytes):
    response = await client.get(
        "/v1/jobs/job-x/logs", params={"maxBytes": max_bytes}, headers=bearer(tenant, "jobs:read")
    )

    assert response.status_code == 422
    assert "maxBytes" in response.text


async def test_input_ready_releases_waiting_job(client, time_env, tenant):
    headers = bearer(tenant, "jobs:read", "jobs:write")
    body = {**job_request(), "waitForInput": True}
    job_id = (await client.post("/v1/jobs", json=body, headers=headers)).json()["jobId"]
    waiting = (await client.get(f"/v1/jobs/{job_id}/events", headers=headers)).json()["events"]

    ready = await client.post(f"/v1/jobs/{job_id}/input-ready", headers=headers)
    await wait_for_instance(client, job_id, headers)
    await client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
    await time_env.client.get_workflow_handle(job_id).result()
    events = (await client.get(f"/v1/jobs/{job_id}/events", headers=headers)).json()["events"]
    late = await client.post(f"/v1/jobs/{job_id}/input-ready", headers=headers)

    assert ready.status_code == 202
    assert [e["type"] for e in events][:3] == ["status", "waiting_for_input", "input_ready"]
    assert len(waiting) <= 2
    assert late.status_code == 409


async def test_twenty_concurrent_submits_start_one_job(client, time_env, tenant, ledger_engine):
    headers = {**bearer(tenant, "jobs:read", "jobs:write"), "Idempotency-Key": "burst-1"}

    responses = await asyncio.gather(
        *(client.post("/v1/jobs", json=job_request(), headers=headers) for _ in range(20))
    )
    job_ids = {response.json()["jobId"] for response in responses}
    (job_id,) = job_ids
    await client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
    await time_env.client.get_workflow_handle(job_id).result()
    other = await client.post(
        "/v1/jobs",
        json=job_request(),
        headers={**bearer("someone-else", "jobs:write"), "Idempotency-Key": "burst-1"},
    )

    assert sorted(response.status_code for response in responses) == [200] * 19 + [201]
    hold = ledger.get_hold(ledger_engine, job_id)
    assert hold.amount_micros == 5 * CREDIT
    assert ledger.get_balances(ledger_engine, tenant).held_micros == 0
    with ledger_engine.connect() as connection:
        holds = connection.execute(
            sa.select(sa.func.count())
            .select_from(transactions)
            .where(transactions.c.tenant_id == tenant, transactions.c.kind == "hold")
        ).scalar_one()
    assert holds == 1
    assert other.status_code == 201
    assert other.json()["jobId"] != job_id


async def test_retry_after_insufficient_credits_runs_again(client, time_env, ledger_engine):
    tenant = f"tenant-{uuid.uuid4().hex[:12]}"
    ledger.grant(ledger_engine, tenant_id=tenant, amount_micros=1 * CREDIT, key="small-grant")
    headers = {**bearer(tenant, "jobs:read", "jobs:write"), "Idempotency-Key": "after-top-up"}

    first = await client.post("/v1/jobs", json=job_request("5"), headers=headers)
    job_id = first.json()["jobId"]
    failed: dict = await time_env.client.get_workflow_handle(job_id).result()
    ledger.grant(ledger_engine, tenant_id=tenant, amount_micros=10 * CREDIT, key="top-up")
    retried = await client.post("/v1/jobs", json=job_request("5"), headers=headers)
    await wait_for_instance(client, job_id, headers)
    held = ledger.get_balances(ledger_engine, tenant).held_micros
    await client.post(f"/v1/jobs/{job_id}/cancel", headers=headers)
    await time_env.client.get_workflow_handle(job_id).result()
    again = await client.post("/v1/jobs", json=job_request("5"), headers=headers)

    assert first.status_code == 201
    assert failed["status"] == "FAILED"
    assert failed["failure_reason"].startswith("insufficient credits")
    assert retried.status_code == 201
    assert retried.json()["jobId"] == job_id
    assert held == 5 * CREDIT
    # The second run took effect, so the key now returns it instead of running a third.
    assert again.status_code == 200
    assert again.json()["status"] == "CANCELLED"

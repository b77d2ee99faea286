"""Grant expiry: the workflow on the time-skipping server, the schedule on a dev server."""

import asyncio
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.client import WorkflowExecutionStatus
from temporalio.worker import Worker

import ledger
from activities.jobs import JobActivities
from activities.maintenance import ExpireGrantsResult, MaintenanceActivities
from activities.sweep import SweepActivities, SweepResult
from config import Settings
from providers.base import ProvisionRequest, QuoteRequest
from providers.fake import FakeProvider
from tests.conftest import start_dev_server_env
from worker.main import build_worker
from worker.schedules import (
    EXPIRE_GRANTS_INTERVAL,
    EXPIRE_GRANTS_SCHEDULE_ID,
    ORPHAN_SWEEP_SCHEDULE_ID,
    ensure_schedules,
)
from workflows.job import JobWorkflow
from workflows.maintenance import (
    ExpireGrantsInput,
    ExpireGrantsWorkflow,
    OrphanSweepInput,
    OrphanSweepWorkflow,
)
from workflows.types import CancelRequest, JobInput

CREDIT = 1_000_000


async def test_expire_workflow_expires_past_grants(time_env, ledger_engine, tenant):
    expiry = datetime.now(UTC) + timedelta(hours=1)
    ledger.grant(
        ledger_engine, tenant_id=tenant, amount_micros=3 * CREDIT, key="expiring", expires_at=expiry
    )
    ledger.grant(ledger_engine, tenant_id=tenant, amount_micros=2 * CREDIT, key="lasting")
    task_queue = f"maintenance-{uuid.uuid4().hex}"

    async with Worker(
        time_env.client,
        task_queue=task_queue,
        workflows=[ExpireGrantsWorkflow],
        activities=MaintenanceActivities(ledger_engine=ledger_engine).all(),
    ):
        await time_env.sleep(timedelta(hours=2))
        result: ExpireGrantsResult = await time_env.client.execute_workflow(
            ExpireGrantsWorkflow.run,
            ExpireGrantsInput(),
            id=f"expire-{uuid.uuid4().hex}",
            task_queue=task_queue,
        )

    assert result.transactions >= 1
    assert result.expired_micros >= 3 * CREDIT
    assert ledger.get_balances(ledger_engine, tenant).available_micros == 2 * CREDIT


@pytest.fixture(scope="module")
async def dev_env():
    env = await start_dev_server_env()
    yield env
    await env.shutdown()


async def test_ensure_schedules_creates_expiry_schedule_once(dev_env):
    settings = Settings(task_queue=f"schedules-{uuid.uuid4().hex}")

    await ensure_schedules(dev_env.client, settings)
    await ensure_schedules(dev_env.client, settings)

    description = await dev_env.client.get_schedule_handle(EXPIRE_GRANTS_SCHEDULE_ID).describe()
    (interval,) = description.schedule.spec.intervals
    assert interval.every == EXPIRE_GRANTS_INTERVAL
    assert description.schedule.action.workflow == ExpireGrantsWorkflow.__name__
    assert description.schedule.action.task_queue == settings.task_queue
    sweep = await dev_env.client.get_schedule_handle(ORPHAN_SWEEP_SCHEDULE_ID).describe()
    assert sweep.schedule.action.workflow == OrphanSweepWorkflow.__name__


async def test_orphan_sweep_terminates_only_finished_jobs(dev_env, ledger_engine, tenant):
    provider = FakeProvider(
        price_per_hour_micros=CREDIT, gpu_types=["A100"], start_seconds=0, run_seconds=3 * 3600
    )
    ledger.grant(ledger_engine, tenant_id=tenant, amount_micros=100 * CREDIT, key="sweep")
    task_queue = f"sweep-{uuid.uuid4().hex}"
    jobs = JobActivities(
        providers={"fake": provider}, ledger_engine=ledger_engine, poll_interval_seconds=1
    )
    sweep = SweepActivities(client=dev_env.client, providers={"fake": provider})
    settings = Settings(task_queue=task_queue)

    async with build_worker(dev_env.client, settings, jobs, sweep=sweep):
        input = job_input(tenant, 10 * CREDIT)
        running = await dev_env.client.start_workflow(
            JobWorkflow.run, input, id=input.job_id, task_queue=task_queue
        )
        for _ in range(100):
            if (await running.query(JobWorkflow.state)).instance_id:
                break
            await asyncio.sleep(0.1)
        (offer,) = await provider.quote(QuoteRequest(gpu_type="A100", gpu_count=1))
        orphan_id = await provider.provision(
            ProvisionRequest(
                client_token="job-gone-1", job_id="job-gone", offer=offer, image="i", command=["c"],
                now=time.time(),
            )
        )

        result: SweepResult = await dev_env.client.execute_workflow(
            OrphanSweepWorkflow.run,
            OrphanSweepInput(),
            id=f"sweep-{uuid.uuid4().hex}",
            task_queue=task_queue,
        )
        still_running = (await running.describe()).status
        await running.signal(JobWorkflow.cancel, CancelRequest())
        await running.result()

        # An instance left behind under the finished job's id, as a crashed teardown would.
        late_id = await provider.provision(
            ProvisionRequest(
                client_token=f"{input.job_id}-9", job_id=input.job_id, offer=offer, image="i",
                command=["c"], now=time.time(),
            )
        )
        second: SweepResult = await dev_env.client.execute_workflow(
            OrphanSweepWorkflow.run,
            OrphanSweepInput(),
            id=f"sweep-{uuid.uuid4().hex}",
            task_queue=task_queue,
        )

    assert result.checked == 2
    assert [(s.instance_id, s.reason) for s in result.terminated] == [
        (orphan_id, "no job workflow with this id exists")
    ]
    assert still_running == WorkflowExecutionStatus.RUNNING
    assert second.checked == 1
    assert [(s.instance_id, s.reason) for s in second.terminated] == [
        (late_id, "job workflow is COMPLETED")
    ]
    assert provider.live_instances() == 0


def job_input(tenant: str, budget_micros: int) -> JobInput:
    return JobInput(
        job_id=f"job-{uuid.uuid4().hex}",
        tenant_id=tenant,
        image="python:3.11",
        command=["python", "train.py"],
        max_budget_micros=budget_micros,
        gpu_type="A100",
        gpu_count=1,
    )

"""Grant expiry: the workflow on the time-skipping server, the schedule on a dev server."""

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import ledger
from activities.maintenance import ExpireGrantsResult, MaintenanceActivities
from config import Settings
from tests.support.processes import TEMPORAL
from worker.schedules import EXPIRE_GRANTS_INTERVAL, EXPIRE_GRANTS_SCHEDULE_ID, ensure_schedules
from workflows.maintenance import ExpireGrantsInput, ExpireGrantsWorkflow

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
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL, ip="127.0.0.1", ui=False
    )
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

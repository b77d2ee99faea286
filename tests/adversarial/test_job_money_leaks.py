"""Ways a job ends, or is killed, with its instance still running or its hold still open.

Each test runs the real `JobWorkflow` and activities on the time-skipping test server with a
PostgreSQL ledger and fake providers. Each failed before the fix its docstring describes, and
guards against that bug coming back.
"""

import asyncio
import uuid

import pytest
import sqlalchemy as sa
from temporalio.api.enums.v1 import EventType
from temporalio.client import WorkflowFailureError, WorkflowHandle
from temporalio.worker import Worker

import ledger
from activities.jobs import JobActivities
from activities.webhooks import WebhookActivities
from ledger.alerts import set_low_balance_alert
from providers.base import (
    InstanceStatus,
    Offer,
    ProvisionRequest,
    QuoteRequest,
    TransientProviderError,
)
from providers.fake import FakeProvider
from tests.support.webhook_receiver import webhook_receiver
from tests.workflows.test_job_workflow import (
    CREDIT,
    HOUR,
    WEBHOOK_SETTINGS,
    fake,
    fund,
    job_input,
    job_worker,
    start,
)
from workflows.job import JobWorkflow
from workflows.types import JobEventType, JobInput, JobState, JobStatus

HISTORY_EVENT_LIMIT = 300
"""History length at which these tests expect a monitored job to continue as new."""


class SlowTeardownProvider:
    """A fake provider whose `terminate` raises TransientProviderError while `shutting_down`
    is set, as the aws adapter does until EC2 reports the instance terminated."""

    def __init__(self, inner: FakeProvider) -> None:
        self.inner = inner
        self.name = inner.name
        self.shutting_down = False

    async def quote(self, request: QuoteRequest) -> list[Offer]:
        return await self.inner.quote(request)

    async def provision(self, request: ProvisionRequest) -> str:
        return await self.inner.provision(request)

    async def status(self, instance_id: str, now: float) -> InstanceStatus:
        return await self.inner.status(instance_id, now)

    async def terminate(self, instance_id: str, now: float) -> InstanceStatus:
        if self.shutting_down:
            raise TransientProviderError(f"instance {instance_id} is still shutting down")
        return await self.inner.terminate(instance_id, now)


async def run_to_first_run_history(env, engine, providers, input: JobInput, *, receiver=None):
    """Run the job to its end with a low continue-as-new limit; return its final state and
    the history of its first run.

    `receiver`, when given, is a webhook receiver whose `refuse_next` is raised to 20 once it
    has accepted the job's first three events, so the RUNNING event is still being retried
    when the history reaches the limit.
    """
    task_queue = f"adversarial-{uuid.uuid4().hex}"
    activities = JobActivities(
        providers={provider.name: provider for provider in providers},
        ledger_engine=engine,
        poll_interval_seconds=60,
        history_event_limit=HISTORY_EVENT_LIMIT,
    )
    webhooks = WebhookActivities(WEBHOOK_SETTINGS)
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[JobWorkflow],
        activities=[*activities.all(), webhooks.deliver_event, webhooks.deliver_low_balance],
    ):
        handle = await env.client.start_workflow(
            JobWorkflow.run, input, id=input.job_id, task_queue=task_queue
        )
        if receiver is not None:
            # No client waits on the handle yet, so time does not advance past the first poll timer.
            for _ in range(200):
                if len(receiver.accepted()) >= 3:
                    break
                await asyncio.sleep(0.05)
            receiver.refuse_next = 20
        state: JobState = await handle.result()
        first_run = env.client.get_workflow_handle(input.job_id, run_id=handle.first_execution_run_id)
        history = await first_run.fetch_history()
    await webhooks.aclose()
    return state, history


async def test_long_job_without_callback_continues_as_new(time_env, ledger_engine, tenant):
    """A job without a callbackUrl never counted an event as delivered, so `_history_too_long`
    always found undelivered events and the job never continued as new. Its history grew by
    about 11 events per poll (2,028 for this job's 180 polls). Temporal terminates a workflow
    at 51,200 events by default, about 6 hours at the default 5 s poll, with no teardown and
    no settlement."""
    provider = fake(run_seconds=3 * HOUR)
    fund(ledger_engine, tenant, 100 * CREDIT)
    input = job_input(tenant, 20 * CREDIT)

    state, first_history = await run_to_first_run_history(
        time_env, ledger_engine, [provider], input
    )

    assert state.status == JobStatus.SUCCEEDED
    last_event = first_history.events[-1].event_type
    assert last_event == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW, (
        f"the first run of a 3-hour job without a callbackUrl has {len(first_history.events)}"
        f" history events and never continued as new, although the limit is {HISTORY_EVENT_LIMIT}"
    )


async def test_pending_notice_allows_continue_as_new(
    time_env, ledger_engine, tenant
):
    """A low-balance notice whose receiver is down is retried for up to a day, and while it
    is pending `_history_too_long` returns False. The job's history then grows
    until Temporal terminates it, with its instance still running and its hold open."""
    provider = fake(run_seconds=3 * HOUR)
    fund(ledger_engine, tenant, 100 * CREDIT)
    input = job_input(tenant, 20 * CREDIT)

    with webhook_receiver() as alert_receiver:
        alert_receiver.reject_with = 503
        set_low_balance_alert(
            ledger_engine,
            tenant_id=tenant,
            threshold_micros=90 * CREDIT,
            callback_url=alert_receiver.url,
        )
        state, first_history = await run_to_first_run_history(
            time_env, ledger_engine, [provider], input
        )

    assert state.status == JobStatus.SUCCEEDED
    last_event = first_history.events[-1].event_type
    assert last_event == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW, (
        f"the first run has {len(first_history.events)} history events and never continued as"
        f" new while its low-balance notice was pending, although the limit is"
        f" {HISTORY_EVENT_LIMIT}"
    )


async def test_continue_as_new_keeps_webhook_in_flight(time_env, ledger_engine, tenant):
    """The webhook loop counted an event as delivered before its delivery succeeded. A job
    that continued as new while the receiver rejected the RUNNING event therefore dropped
    that event, because the new run started after it."""
    provider = fake(run_seconds=3 * HOUR)
    fund(ledger_engine, tenant, 100 * CREDIT)
    input = job_input(tenant, 20 * CREDIT)

    with webhook_receiver() as receiver:
        input.callback_url = receiver.url
        state, first_history = await run_to_first_run_history(
            time_env, ledger_engine, [provider], input, receiver=receiver
        )
        accepted = [delivery.headers["Webhook-Id"] for delivery in receiver.accepted()]

    assert first_history.events[-1].event_type == (
        EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    )
    status_events = [event for event in state.events if event.type == JobEventType.STATUS]
    expected = [f"{input.job_id}/{event.sequence}" for event in status_events]
    missing = [webhook_id for webhook_id in expected if webhook_id not in accepted]
    assert missing == [], f"status events never delivered across continue-as-new: {missing}"


async def test_temporal_cancel_during_final_teardown_settles(time_env, ledger_engine, tenant):
    """README: a job whose workflow is cancelled through Temporal tears its instance down and
    settles. A cancel that arrives while the final teardown is still retrying (the job has
    already ended) cancels the terminate activity and escapes `run`, so the workflow ends
    cancelled with the instance live and the whole budget held."""
    inner = fake(run_seconds=HOUR)
    provider = SlowTeardownProvider(inner)
    provider.shutting_down = True
    fund(ledger_engine, tenant, 100 * CREDIT)
    input = job_input(tenant, 20 * CREDIT)

    async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
        handle = await start(time_env, task_queue, input)
        await time_env.sleep(HOUR + 10 * 60)
        before_cancel: JobState = await handle.query(JobWorkflow.state)
        await handle.cancel()
        provider.shutting_down = False
        try:
            await handle.result()
        except WorkflowFailureError:
            pass

    assert before_cancel.held_micros == 20 * CREDIT
    assert inner.live_instances() == 0, "the instance outlived its job"
    balances = ledger.get_balances(ledger_engine, tenant)
    assert balances.held_micros == 0, (
        f"{balances.held_micros} micro-credits stay held after the job's workflow closed"
    )


async def test_temporal_cancel_while_hold_posts_releases_hold(
    time_env, ledger_engine, pg_url, tenant
):
    """A Temporal cancel while `hold_budget` runs makes the workflow give up on the hold
    ("the budget could not be held: Cancelled") and skip settlement, but the activity still
    posts the hold, which nothing ever releases."""
    fund(ledger_engine, tenant, 100 * CREDIT)
    input = job_input(tenant, 20 * CREDIT)
    locker = sa.create_engine(pg_url, poolclass=sa.NullPool)
    connection = locker.connect()
    lock = connection.begin()

    async def release_lock_later() -> None:
        await asyncio.sleep(2)
        lock.commit()

    try:
        # The ledger locks the tenant's available account first, so holding that row lock
        # keeps the hold activity waiting inside PostgreSQL.
        connection.execute(
            sa.text(
                "SELECT id FROM accounts WHERE tenant_id = :tenant AND name = 'available'"
                " FOR UPDATE"
            ),
            {"tenant": tenant},
        )
        async with job_worker(time_env, ledger_engine, [fake()]) as task_queue:
            handle = await start(time_env, task_queue, input)
            await _wait_for_lock_waiter(connection)
            await handle.cancel()
            releaser = asyncio.create_task(release_lock_later())
            state: JobState = await handle.result()
            await releaser
            hold = await _wait_for_hold(ledger_engine, input.job_id)
    finally:
        connection.close()
        locker.dispose()

    assert state.held_micros == 0
    balances = ledger.get_balances(ledger_engine, tenant)
    assert hold is None or hold.captured_micros + hold.released_micros == hold.amount_micros, (
        f"the job ended {state.status.value} ({state.failure_reason}) but its hold of"
        f" {hold.amount_micros} micro-credits is still open"
    )
    assert balances.held_micros == 0


async def test_job_whose_hold_ledger_rejects_fails(time_env, ledger_engine):
    """The ledger rejects the tenant id `platform` with a ValueError. The hold activity
    reports it as a rejection, so the job fails at once with nothing held, instead of
    retrying the hold for ever. (The API refuses tokens with that subject before this.)"""
    input = job_input("platform", 1 * CREDIT)

    async with job_worker(time_env, ledger_engine, [fake()]) as task_queue:
        handle: WorkflowHandle = await start(time_env, task_queue, input)
        try:
            state: JobState = await asyncio.wait_for(handle.result(), timeout=15)
        except TimeoutError:
            pytest.fail("the job of tenant 'platform' did not end within 15 s")
        finally:
            await _terminate_if_running(handle)

    assert state.status == JobStatus.FAILED
    assert state.failure_reason == (
        "the budget could not be held: tenant_id 'platform' is reserved for the platform's"
        " own accounts"
    )
    assert state.held_micros == 0


async def _wait_for_lock_waiter(connection) -> None:
    """Wait until another session of this database waits for a row lock."""
    for _ in range(200):
        waiting = connection.execute(
            sa.text(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND wait_event_type = 'Lock'"
            )
        ).scalar_one()
        if waiting:
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the hold activity never waited for the tenant's row lock")


async def _wait_for_hold(engine, job_id: str) -> ledger.HoldRecord | None:
    """Return the job's hold once it is posted, or None if none is posted within 10 s."""
    for _ in range(100):
        hold = ledger.get_hold(engine, job_id)
        if hold is not None:
            return hold
        await asyncio.sleep(0.1)
    return None


async def _terminate_if_running(handle: WorkflowHandle) -> None:
    description = await handle.describe()
    if description.close_time is None:
        await handle.terminate("adversarial test cleanup")

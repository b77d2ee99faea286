"""A long job continues as new before its history grows large, and carries its state."""

import uuid

from temporalio.api.enums.v1 import EventType
from temporalio.worker import Worker

from activities.jobs import JobActivities
from activities.webhooks import WebhookActivities
from tests.support.webhook_receiver import webhook_receiver
from tests.workflows.test_job_workflow import (
    CREDIT,
    HOUR,
    PRICE,
    WEBHOOK_SETTINGS,
    fake,
    fund,
    job_input,
)
from workflows.job import JobWorkflow
from workflows.types import CancelRequest, JobEventType, JobState, JobStatus


async def run_job(env, engine, providers, input, history_event_limit: int):
    task_queue = f"jobs-{uuid.uuid4().hex}"
    activities = JobActivities(
        providers={p.name: p for p in providers},
        ledger_engine=engine,
        poll_interval_seconds=60,
        history_event_limit=history_event_limit,
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
        state: JobState = await handle.result()
        first_run = env.client.get_workflow_handle(input.job_id, run_id=handle.result_run_id)
        history = await first_run.fetch_history()
    await webhooks.aclose()
    return handle, state, history


async def test_long_job_continues_as_new_and_bills_once(time_env, ledger_engine, tenant):
    provider = fake(run_seconds=3 * HOUR)
    fund(ledger_engine, tenant, 100 * CREDIT)
    input = job_input(tenant, 20 * CREDIT)

    with webhook_receiver() as receiver:
        input.callback_url = receiver.url
        handle, state, first_history = await run_job(
            time_env, ledger_engine, [provider], input, history_event_limit=300
        )
        delivered = [delivery.headers["Webhook-Id"] for delivery in receiver.accepted()]

    last_event = first_history.events[-1]
    assert last_event.event_type == EventType.EVENT_TYPE_WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    assert len(first_history.events) < 400
    assert state.status == JobStatus.SUCCEEDED
    assert state.captured_micros == 3 * PRICE
    assert state.released_micros == 20 * CREDIT - 3 * PRICE
    assert len(state.segments) == 1
    assert provider.launch_count == 1
    assert provider.live_instances() == 0
    assert [event.sequence for event in state.events] == list(range(1, len(state.events) + 1))
    status_events = [e for e in state.events if e.type == JobEventType.STATUS]
    assert delivered == [f"{input.job_id}/{event.sequence}" for event in status_events]


async def test_cancel_after_continue_as_new_settles(time_env, ledger_engine, tenant):
    provider = fake(run_seconds=10 * HOUR)
    fund(ledger_engine, tenant, 100 * CREDIT)
    input = job_input(tenant, 40 * CREDIT)
    task_queue = f"jobs-{uuid.uuid4().hex}"
    activities = JobActivities(
        providers={provider.name: provider},
        ledger_engine=ledger_engine,
        poll_interval_seconds=60,
        history_event_limit=300,
    )

    async with Worker(
        time_env.client, task_queue=task_queue, workflows=[JobWorkflow], activities=activities.all()
    ):
        handle = await time_env.client.start_workflow(
            JobWorkflow.run, input, id=input.job_id, task_queue=task_queue
        )
        await time_env.sleep(2 * HOUR)
        running: JobState = await handle.query(JobWorkflow.state)
        await handle.signal(JobWorkflow.cancel, CancelRequest(reason="enough"))
        state: JobState = await handle.result()

    assert running.status == JobStatus.RUNNING
    assert state.status == JobStatus.CANCELLED
    assert state.failure_reason == "enough"
    (segment,) = state.segments
    assert 2 * HOUR <= segment.billable_seconds < 2 * HOUR + 120
    assert state.captured_micros == segment.cost_micros
    assert provider.live_instances() == 0

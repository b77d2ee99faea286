"""A job's timeline of events, and its delivery to the job's callback URL."""

import json

import sdk.webhooks
from ledger.alerts import get_low_balance_alert, set_low_balance_alert
from providers.fake import FakeFaults
from tests.support.webhook_receiver import webhook_receiver
from tests.workflows.test_job_workflow import (
    CREDIT,
    HOUR,
    PRICE,
    WEBHOOK_SETTINGS,
    fake,
    fund,
    job_input,
    job_worker,
    start,
)
from workflows.job import JobWorkflow
from workflows.types import InputReady, JobEventType, JobState, JobStatus


async def test_succeeded_job_timeline(time_env, ledger_engine, tenant):
    provider = fake(run_seconds=HOUR)
    fund(ledger_engine, tenant, 10 * CREDIT)
    input = job_input(tenant, 5 * CREDIT)

    async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
        state: JobState = await (await start(time_env, task_queue, input)).result()

    timeline = [(event.type, event.status) for event in state.events]
    assert timeline == [
        (JobEventType.STATUS, JobStatus.SUBMITTED),
        (JobEventType.STATUS, JobStatus.QUEUED),
        (JobEventType.STATUS, JobStatus.PROVISIONING),
        (JobEventType.ATTEMPT, JobStatus.PROVISIONING),
        (JobEventType.INSTANCE_LAUNCHED, JobStatus.PROVISIONING),
        (JobEventType.STATUS, JobStatus.RUNNING),
        # The final status shows only once the instance is gone and the hold is settled.
        (JobEventType.SEGMENT_BILLED, JobStatus.RUNNING),
        (JobEventType.SETTLED, JobStatus.RUNNING),
        (JobEventType.STATUS, JobStatus.SUCCEEDED),
    ]
    assert [event.sequence for event in state.events] == list(range(1, 10))
    launched = state.events[4]
    assert launched.provider == "fake"
    assert launched.instance_id == state.instance_id
    assert state.events[6].amount_micros == PRICE
    assert state.events[7].amount_micros == PRICE
    assert state.events[7].to_json()["amount"] == "2.500000"
    times = [event.time for event in state.events]
    assert times == sorted(times)


async def test_failover_timeline_names_failed_attempt(time_env, ledger_engine, tenant):
    full = fake("full", price_per_hour_micros=1 * CREDIT, faults=FakeFaults(no_capacity=True))
    spare = fake("spare", run_seconds=HOUR)
    fund(ledger_engine, tenant, 10 * CREDIT)
    input = job_input(tenant, 5 * CREDIT)
    input.policy = "cheapest"

    async with job_worker(time_env, ledger_engine, [full, spare]) as task_queue:
        state: JobState = await (await start(time_env, task_queue, input)).result()

    attempts = [
        (event.type, event.provider)
        for event in state.events
        if event.type in (JobEventType.ATTEMPT, JobEventType.ATTEMPT_FAILED)
    ]
    assert attempts == [
        (JobEventType.ATTEMPT, "full"),
        (JobEventType.ATTEMPT_FAILED, "full"),
        (JobEventType.ATTEMPT, "spare"),
    ]
    failed = next(e for e in state.events if e.type == JobEventType.ATTEMPT_FAILED)
    assert failed.message.startswith("attempt 1: no capacity: ")


async def test_webhooks_survive_refusals_in_order(time_env, ledger_engine, tenant):
    provider = fake(run_seconds=HOUR)
    fund(ledger_engine, tenant, 10 * CREDIT)
    input = job_input(tenant, 5 * CREDIT)

    with webhook_receiver() as receiver:
        receiver.refuse_next = 3
        input.callback_url = receiver.url
        async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
            state: JobState = await (await start(time_env, task_queue, input)).result()
        deliveries = receiver.accepted()
        refused = len(receiver.deliveries) - len(deliveries)

    assert state.status == JobStatus.SUCCEEDED
    assert refused == 3
    status_events = [event for event in state.events if event.type == JobEventType.STATUS]
    bodies = [json.loads(delivery.body) for delivery in deliveries]
    assert [body["sequence"] for body in bodies] == [event.sequence for event in status_events]
    assert [body["status"] for body in bodies] == [
        "SUBMITTED",
        "QUEUED",
        "PROVISIONING",
        "RUNNING",
        "SUCCEEDED",
    ]
    assert {body["jobId"] for body in bodies} == {input.job_id}
    ids = [delivery.headers["Webhook-Id"] for delivery in deliveries]
    assert ids == [f"{input.job_id}/{event.sequence}" for event in status_events]

    secret = WEBHOOK_SETTINGS.tenant_webhook_secret(tenant)
    for delivery in deliveries:
        sdk.webhooks.verify_signature(
            secret,
            timestamp=delivery.headers["Webhook-Timestamp"],
            signature=delivery.headers["Webhook-Signature"],
            body=delivery.body,
        )


async def test_webhook_rejected_is_not_retried(time_env, ledger_engine, tenant):
    provider = fake(run_seconds=HOUR)
    fund(ledger_engine, tenant, 10 * CREDIT)
    input = job_input(tenant, 5 * CREDIT)

    with webhook_receiver() as receiver:
        receiver.reject_with = 410
        input.callback_url = receiver.url
        async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
            state: JobState = await (await start(time_env, task_queue, input)).result()
        attempts = len(receiver.deliveries)

    assert state.status == JobStatus.SUCCEEDED
    assert state.captured_micros == PRICE
    # One try per status change: a 4xx other than 408 and 429 is final.
    assert attempts == 5


async def test_low_balance_notice_sent_once(time_env, ledger_engine, tenant):
    provider = fake(run_seconds=HOUR)
    fund(ledger_engine, tenant, 10 * CREDIT)

    with webhook_receiver() as receiver:
        receiver.refuse_next = 1
        set_low_balance_alert(
            ledger_engine, tenant_id=tenant, threshold_micros=6 * CREDIT, callback_url=receiver.url
        )
        async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
            # Holds 5 of 10 credits: 5 available, below the threshold of 6.
            first = await (
                await start(time_env, task_queue, job_input(tenant, 5 * CREDIT))
            ).result()
            # Settles at 2.5, so 7.5 are available again and the alert is armed.
            armed = get_low_balance_alert(ledger_engine, tenant).armed
            # Holds 2 of 7.5: 5.5 available, a second crossing.
            second = await (
                await start(time_env, task_queue, job_input(tenant, 2 * CREDIT))
            ).result()
            # Holds 1 of 7.5 - 2.5 = 5: still below, not crossing again.
            third = await (
                await start(time_env, task_queue, job_input(tenant, 1 * CREDIT))
            ).result()
        notices = [json.loads(delivery.body) for delivery in receiver.accepted()]

    assert armed is True
    assert [n["jobId"] for n in notices] == [first.job_id, second.job_id]
    assert third.job_id not in {n["jobId"] for n in notices}
    assert notices[0] == {
        "type": "low_balance",
        "tenantId": tenant,
        "jobId": first.job_id,
        "threshold": "6.000000",
        "available": "5.000000",
    }
    assert notices[1]["available"] == "5.500000"


async def test_job_waits_for_input_signal(time_env, ledger_engine, tenant):
    provider = fake(run_seconds=HOUR)
    fund(ledger_engine, tenant, 10 * CREDIT)
    input = job_input(tenant, 5 * CREDIT)
    input.wait_for_input = True

    async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
        handle = await start(time_env, task_queue, input)
        await time_env.sleep(600)
        waiting: JobState = await handle.query(JobWorkflow.state)
        launches_while_waiting = provider.launch_count
        await handle.signal(JobWorkflow.input_ready, InputReady())
        state: JobState = await handle.result()

    assert waiting.status == JobStatus.SUBMITTED
    assert waiting.events[-1].type == JobEventType.WAITING_FOR_INPUT
    assert launches_while_waiting == 0
    assert state.status == JobStatus.SUCCEEDED
    assert [e.type for e in state.events[:4]] == [
        JobEventType.STATUS,
        JobEventType.WAITING_FOR_INPUT,
        JobEventType.INPUT_READY,
        JobEventType.STATUS,
    ]


async def test_job_without_input_fails_unheld(time_env, ledger_engine, tenant):
    provider = fake(run_seconds=HOUR)
    fund(ledger_engine, tenant, 10 * CREDIT)
    input = job_input(tenant, 5 * CREDIT)
    input.wait_for_input = True
    input.input_timeout_seconds = 900

    async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
        state: JobState = await (await start(time_env, task_queue, input)).result()

    assert state.status == JobStatus.FAILED
    assert state.failure_reason == "the job's input was not uploaded within 900 s"
    assert state.held_micros == 0
    assert provider.launch_count == 0

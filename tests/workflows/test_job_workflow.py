"""JobWorkflow on the time-skipping test server, with fake providers and a PostgreSQL ledger."""

import uuid
from contextlib import asynccontextmanager

from temporalio.client import WorkflowHandle
from temporalio.worker import Worker

import ledger
from activities.jobs import JobActivities
from activities.webhooks import WebhookActivities
from config import Settings
from ledger.metering import segment_cost_micros
from providers.base import PermanentProviderError
from providers.fake import FakeFaults, FakeProvider
from workflows.job import JobWorkflow
from workflows.types import CancelRequest, JobInput, JobState, JobStatus

CREDIT = 1_000_000
PRICE = 2_500_000  # 2.5 credits per hour
HOUR = 3600


def fake(name: str = "fake", **overrides) -> FakeProvider:
    options = dict(
        price_per_hour_micros=PRICE,
        gpu_types=["A100"],
        start_seconds=0,
        run_seconds=3 * HOUR,
    )
    options.update(overrides)
    return FakeProvider(name, **options)


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


WEBHOOK_SETTINGS = Settings(jwt_secret="webhook-test-secret-long-enough-for-hs256")


@asynccontextmanager
async def job_worker(env, engine, providers, poll_interval_seconds=60):
    task_queue = f"jobs-{uuid.uuid4().hex}"
    activities = JobActivities(
        providers={p.name: p for p in providers},
        ledger_engine=engine,
        poll_interval_seconds=poll_interval_seconds,
    )
    webhooks = WebhookActivities(WEBHOOK_SETTINGS)
    async with Worker(
        env.client,
        task_queue=task_queue,
        workflows=[JobWorkflow],
        activities=[*activities.all(), webhooks.deliver_event, webhooks.deliver_low_balance],
    ):
        yield task_queue
    await webhooks.aclose()


async def start(env, task_queue: str, input: JobInput) -> WorkflowHandle:
    return await env.client.start_workflow(
        JobWorkflow.run, input, id=input.job_id, task_queue=task_queue
    )


def fund(engine, tenant: str, micros: int) -> None:
    ledger.grant(engine, tenant_id=tenant, amount_micros=micros, key=f"grant-{uuid.uuid4().hex}")


async def test_three_hour_job_charged_exactly(time_env, ledger_engine, tenant):
    provider = fake()
    fund(ledger_engine, tenant, 100 * CREDIT)
    input = job_input(tenant, 20 * CREDIT)

    async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
        handle = await start(time_env, task_queue, input)
        state: JobState = await handle.result()

    assert state.status == JobStatus.SUCCEEDED
    assert state.failure_reason == ""
    assert state.exit_code == 0
    assert state.captured_micros == 7_500_000
    assert state.released_micros == 12_500_000
    assert state.cost_micros == 7_500_000
    assert state.held_micros == 0
    balances = ledger.get_balances(ledger_engine, tenant)
    assert balances.available_micros == 92_500_000
    assert balances.held_micros == 0
    assert balances.spent_micros == 7_500_000
    assert provider.live_instances() == 0


async def test_no_capacity_fails_over_to_next_provider(time_env, ledger_engine, tenant):
    full = fake("cheap", price_per_hour_micros=1 * CREDIT, faults=FakeFaults(no_capacity=True))
    spare = fake("spare", run_seconds=HOUR)
    fund(ledger_engine, tenant, 10 * CREDIT)
    input = job_input(tenant, 5 * CREDIT)

    async with job_worker(time_env, ledger_engine, [full, spare]) as task_queue:
        state: JobState = await (await start(time_env, task_queue, input)).result()

    assert state.status == JobStatus.SUCCEEDED
    assert [a.offer.provider for a in state.attempts] == ["cheap", "spare"]
    assert state.attempts[0].instance_id is None
    assert "capacity" in state.attempts[0].error
    assert state.chosen_offer.provider == "spare"
    assert state.captured_micros == 2_500_000
    assert ledger.get_balances(ledger_engine, tenant).available_micros == 7_500_000
    assert full.live_instances() == 0
    assert spare.live_instances() == 0


async def test_insufficient_credits_fails_with_nothing_held(time_env, ledger_engine, tenant):
    provider = fake()
    fund(ledger_engine, tenant, 1 * CREDIT)
    input = job_input(tenant, 5 * CREDIT)

    async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
        state: JobState = await (await start(time_env, task_queue, input)).result()

    assert state.status == JobStatus.FAILED
    assert state.failure_reason.startswith("insufficient credits")
    assert state.held_micros == 0
    assert state.attempts == []
    balances = ledger.get_balances(ledger_engine, tenant)
    assert balances.available_micros == 1 * CREDIT
    assert balances.held_micros == 0
    assert provider.launch_count == 0


async def test_cancel_while_running_charges_time_used(time_env, ledger_engine, tenant):
    provider = fake()
    fund(ledger_engine, tenant, 100 * CREDIT)
    input = job_input(tenant, 20 * CREDIT)

    async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
        handle = await start(time_env, task_queue, input)
        await time_env.sleep(10 * 60)
        running: JobState = await handle.query(JobWorkflow.state)
        await handle.signal(JobWorkflow.cancel, CancelRequest(reason="no longer needed"))
        state: JobState = await handle.result()

    assert running.status == JobStatus.RUNNING
    assert state.status == JobStatus.CANCELLED
    assert state.failure_reason == "no longer needed"
    (instance,) = provider.instances.values()
    used = instance.status_at(instance.terminated_at).billable_seconds
    assert 10 * 60 <= used < 15 * 60
    expected = segment_cost_micros(price_per_hour_micros=PRICE, seconds=used)
    assert state.captured_micros == expected
    assert state.released_micros == 20 * CREDIT - expected
    balances = ledger.get_balances(ledger_engine, tenant)
    assert balances.available_micros == 100 * CREDIT - expected
    assert balances.held_micros == 0
    assert provider.live_instances() == 0


async def test_crash_mid_run_charges_time_used(time_env, ledger_engine, tenant):
    provider = fake(faults=FakeFaults(crash_after_seconds=30 * 60))
    fund(ledger_engine, tenant, 100 * CREDIT)
    input = job_input(tenant, 20 * CREDIT)

    async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
        state: JobState = await (await start(time_env, task_queue, input)).result()

    assert state.status == JobStatus.FAILED
    assert state.failure_reason == "the instance failed: instance crashed"
    assert state.captured_micros == 1_250_000
    assert state.released_micros == 18_750_000
    balances = ledger.get_balances(ledger_engine, tenant)
    assert balances.available_micros == 98_750_000
    assert balances.held_micros == 0
    assert provider.live_instances() == 0


async def test_budget_exhausted_stops_job_and_captures_hold(time_env, ledger_engine, tenant):
    provider = fake()
    fund(ledger_engine, tenant, 100 * CREDIT)
    input = job_input(tenant, 1 * CREDIT)  # buys 24 minutes at 2.5 credits per hour

    async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
        state: JobState = await (await start(time_env, task_queue, input)).result()

    assert state.status == JobStatus.FAILED
    assert state.failure_reason.startswith("budget exhausted")
    assert state.captured_micros == 1 * CREDIT
    assert state.released_micros == 0
    assert ledger.get_balances(ledger_engine, tenant).available_micros == 99 * CREDIT
    assert provider.live_instances() == 0


async def test_no_offer_fails_without_hold(time_env, ledger_engine, tenant):
    provider = fake(gpu_types=["H100"])
    fund(ledger_engine, tenant, 10 * CREDIT)
    input = job_input(tenant, 5 * CREDIT)

    async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
        state: JobState = await (await start(time_env, task_queue, input)).result()

    assert state.status == JobStatus.FAILED
    assert state.failure_reason == "no enabled provider offered A100"
    assert ledger.get_balances(ledger_engine, tenant).held_micros == 0


async def test_workflow_cancel_while_running_tears_down(time_env, ledger_engine, tenant):
    provider = fake()
    fund(ledger_engine, tenant, 100 * CREDIT)
    input = job_input(tenant, 20 * CREDIT)

    async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
        handle = await start(time_env, task_queue, input)
        await time_env.sleep(5 * 60)
        await handle.cancel()
        state: JobState = await handle.result()

    assert state.status == JobStatus.CANCELLED
    assert state.failure_reason == "cancelled through Temporal"
    assert state.captured_micros > 0
    assert ledger.get_balances(ledger_engine, tenant).held_micros == 0
    assert provider.live_instances() == 0


async def test_capacity_errors_at_two_offers_land_on_third(time_env, ledger_engine, tenant):
    first = fake("first", price_per_hour_micros=1 * CREDIT, faults=FakeFaults(no_capacity=True))
    second = fake("second", price_per_hour_micros=2 * CREDIT, faults=FakeFaults(no_capacity=True))
    third = fake("third", price_per_hour_micros=3 * CREDIT, run_seconds=HOUR)
    fund(ledger_engine, tenant, 10 * CREDIT)
    input = job_input(tenant, 5 * CREDIT)
    input.policy = "cheapest"

    async with job_worker(time_env, ledger_engine, [first, second, third]) as task_queue:
        state: JobState = await (await start(time_env, task_queue, input)).result()

    assert state.status == JobStatus.SUCCEEDED
    assert [a.offer.provider for a in state.attempts] == ["first", "second", "third"]
    assert [a.instance_id is None for a in state.attempts] == [True, True, False]
    assert state.captured_micros == 3 * CREDIT
    assert third.live_instances() == 0


async def test_spot_job_preempted_twice_billed_per_segment(time_env, ledger_engine, tenant):
    def spot(name: str, spot_price: int, preempt_after: int | None) -> FakeProvider:
        return fake(
            name,
            price_per_hour_micros=10 * CREDIT,
            spot_price_per_hour_micros=spot_price,
            run_seconds=HOUR,
            faults=FakeFaults(preempt_after_seconds=preempt_after),
        )

    providers = [
        spot("spot-a", 1 * CREDIT, 30 * 60),
        spot("spot-b", 2 * CREDIT, 30 * 60),
        spot("spot-c", 3 * CREDIT, None),
    ]
    fund(ledger_engine, tenant, 100 * CREDIT)
    input = job_input(tenant, 20 * CREDIT)
    input.spot_ok = True
    input.policy = "cheapest"

    async with job_worker(time_env, ledger_engine, providers) as task_queue:
        state: JobState = await (await start(time_env, task_queue, input)).result()

    assert state.status == JobStatus.SUCCEEDED
    assert [s.provider for s in state.segments] == ["spot-a", "spot-b", "spot-c"]
    assert [s.end_state for s in state.segments] == ["PREEMPTED", "PREEMPTED", "SUCCEEDED"]
    assert [s.billable_seconds for s in state.segments] == [30 * 60, 30 * 60, HOUR]
    assert [s.cost_micros for s in state.segments] == [500_000, 1_000_000, 3_000_000]
    assert state.captured_micros == 4_500_000
    assert ledger.get_balances(ledger_engine, tenant).available_micros == 95_500_000
    assert all(provider.live_instances() == 0 for provider in providers)


async def test_every_offer_over_max_price_fails_unheld(time_env, ledger_engine, tenant):
    provider = fake()
    fund(ledger_engine, tenant, 10 * CREDIT)
    input = job_input(tenant, 5 * CREDIT)
    input.max_price_per_hour_micros = 1 * CREDIT

    async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
        state: JobState = await (await start(time_env, task_queue, input)).result()

    assert state.status == JobStatus.FAILED
    assert state.failure_reason == (
        "no offer for A100 fits the job's limits (maximum budget 5.000000 credits): "
        "every offer was excluded (1 over the maximum price)"
    )
    assert ledger.get_balances(ledger_engine, tenant).held_micros == 0
    assert ledger.get_balances(ledger_engine, tenant).available_micros == 10 * CREDIT
    assert provider.launch_count == 0


async def test_instance_never_ready_is_replaced(time_env, ledger_engine, tenant):
    slow = fake("slow", price_per_hour_micros=1 * CREDIT, start_seconds=10 * HOUR)
    ready = fake("ready", price_per_hour_micros=2 * CREDIT, run_seconds=HOUR)
    fund(ledger_engine, tenant, 10 * CREDIT)
    input = job_input(tenant, 5 * CREDIT)
    input.policy = "cheapest"

    async with job_worker(time_env, ledger_engine, [slow, ready]) as task_queue:
        state: JobState = await (await start(time_env, task_queue, input)).result()

    assert state.status == JobStatus.SUCCEEDED
    assert [a.offer.provider for a in state.attempts] == ["slow", "ready"]
    assert state.attempts[0].error == "the instance was not ready within 900 s"
    assert [s.provider for s in state.segments] == ["slow", "ready"]
    assert [s.end_state for s in state.segments] == ["TERMINATED", "SUCCEEDED"]
    assert 900 < state.segments[0].billable_seconds <= 900 + 60
    assert state.captured_micros == state.segments[0].cost_micros + 2 * CREDIT
    assert slow.live_instances() == 0
    assert ready.live_instances() == 0


async def test_cancel_while_provisioning_leaves_no_instance(time_env, ledger_engine, tenant):
    provider = fake(start_seconds=HOUR)
    fund(ledger_engine, tenant, 10 * CREDIT)
    input = job_input(tenant, 5 * CREDIT)

    async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
        handle = await start(time_env, task_queue, input)
        await time_env.sleep(5 * 60)
        pending: JobState = await handle.query(JobWorkflow.state)
        await handle.signal(JobWorkflow.cancel, CancelRequest())
        state: JobState = await handle.result()

    assert pending.status == JobStatus.PROVISIONING
    assert state.status == JobStatus.CANCELLED
    assert provider.launch_count == 1
    assert provider.live_instances() == 0
    (segment,) = state.segments
    assert state.captured_micros == segment.cost_micros
    assert ledger.get_balances(ledger_engine, tenant).held_micros == 0


async def test_instance_never_listed_is_replaced(time_env, ledger_engine, tenant):
    lost = fake("lost", price_per_hour_micros=1 * CREDIT, faults=FakeFaults(status_absent=True))
    ready = fake("ready", price_per_hour_micros=2 * CREDIT, run_seconds=HOUR)
    fund(ledger_engine, tenant, 10 * CREDIT)
    input = job_input(tenant, 5 * CREDIT)
    input.policy = "cheapest"

    async with job_worker(time_env, ledger_engine, [lost, ready]) as task_queue:
        state: JobState = await (await start(time_env, task_queue, input)).result()

    assert state.status == JobStatus.SUCCEEDED
    assert [a.offer.provider for a in state.attempts] == ["lost", "ready"]
    assert state.attempts[0].error == "the instance was not ready within 900 s"
    assert [s.end_state for s in state.segments] == ["TERMINATED", "SUCCEEDED"]
    # Never listed, so no status read ever billed a second of it.
    assert state.segments[0].billable_seconds == 0
    assert state.segments[0].cost_micros == 0
    assert state.captured_micros == 2 * CREDIT
    assert lost.launch_count == 1
    assert ready.live_instances() == 0


class VanishingProvider(FakeProvider):
    """A fake whose instances stop being listed once they have run for `vanish_after` seconds."""

    def __init__(self, *args, vanish_after: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.vanish_after = vanish_after

    def _vanished(self, instance_id: str, now: float) -> bool:
        instance = self._instances.get(instance_id)
        return instance is not None and now >= instance.running_at + self.vanish_after

    async def status(self, instance_id, now):
        if self._vanished(instance_id, now):
            self._instances[instance_id].absent = True
        return await super().status(instance_id, now)


async def test_instance_vanishing_while_running_fails_job(time_env, ledger_engine, tenant):
    provider = VanishingProvider(
        "fake",
        price_per_hour_micros=PRICE,
        gpu_types=["A100"],
        start_seconds=0,
        run_seconds=3 * HOUR,
        vanish_after=HOUR,
    )
    fund(ledger_engine, tenant, 100 * CREDIT)
    input = job_input(tenant, 20 * CREDIT)

    async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
        state: JobState = await (await start(time_env, task_queue, input)).result()

    assert state.status == JobStatus.FAILED
    assert state.failure_reason == f"the provider no longer lists instance {state.instance_id}"
    (segment,) = state.segments
    assert segment.end_state == "TERMINATED"
    # Billed up to the last status read that listed it, within a poll interval of its end.
    assert HOUR - 2 * 60 < segment.billable_seconds < HOUR
    assert state.captured_micros == segment_cost_micros(
        price_per_hour_micros=PRICE, seconds=segment.billable_seconds
    )
    assert ledger.get_balances(ledger_engine, tenant).held_micros == 0


async def test_provider_overcharge_booked_and_reported(time_env, ledger_engine, tenant):
    provider = fake(run_seconds=HOUR, faults=FakeFaults(overcharge_percent=20))
    fund(ledger_engine, tenant, 100 * CREDIT)
    input = job_input(tenant, 20 * CREDIT)

    async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
        state: JobState = await (await start(time_env, task_queue, input)).result()

    assert state.status == JobStatus.SUCCEEDED
    (segment,) = state.segments
    assert segment.price_per_hour_micros == PRICE
    assert segment.provider_price_per_hour_micros == 3_000_000
    assert segment.cost_micros == PRICE
    assert segment.provider_cost_micros == 3_000_000
    assert state.captured_micros == PRICE
    assert state.provider_cost_micros == 3_000_000

    (job,) = [j for j in ledger.variance_report(ledger_engine) if j.job_id == input.job_id]
    assert job.quoted_cost_micros == PRICE
    assert job.charged_cost_micros == 3_000_000
    assert job.billed_micros == PRICE
    assert job.variance_micros == 500_000
    assert job.margin_micros == -500_000
    assert job.providers == ["fake"]


async def test_provider_without_price_booked_at_quote(time_env, ledger_engine, tenant):
    provider = fake(run_seconds=HOUR)
    fund(ledger_engine, tenant, 100 * CREDIT)
    input = job_input(tenant, 20 * CREDIT)

    async with job_worker(time_env, ledger_engine, [provider]) as task_queue:
        state: JobState = await (await start(time_env, task_queue, input)).result()

    assert state.provider_cost_micros == PRICE
    report = ledger.variance_report(ledger_engine, include_all=True, limit=10_000)
    (job,) = [j for j in report if j.job_id == input.job_id]
    assert job.charged_cost_micros == PRICE
    assert job.variance_micros == 0
    assert job.margin_micros == 0


class CreatesThenFails(FakeProvider):
    """A fake whose every create launches the instance and then fails, as a create that
    succeeded at the provider but timed out for the caller does."""

    async def provision(self, request):
        await super().provision(request)
        raise PermanentProviderError(f"provider {self.name}: the create timed out")


async def test_failed_create_leaves_no_instance_behind(time_env, ledger_engine, tenant):
    flaky = CreatesThenFails(
        "flaky",
        price_per_hour_micros=1 * CREDIT,
        gpu_types=["A100"],
        start_seconds=0,
        run_seconds=3 * HOUR,
    )
    steady = fake("steady", run_seconds=HOUR)
    fund(ledger_engine, tenant, 10 * CREDIT)
    input = job_input(tenant, 5 * CREDIT)
    input.policy = "cheapest"

    async with job_worker(time_env, ledger_engine, [flaky, steady]) as task_queue:
        state: JobState = await (await start(time_env, task_queue, input)).result()

    assert state.status == JobStatus.SUCCEEDED
    assert [a.offer.provider for a in state.attempts] == ["flaky", "steady"]
    assert flaky.launch_count == 1
    assert flaky.live_instances() == 0
    first = state.attempts[0]
    assert first.instance_id is not None
    assert first.error.endswith(
        f"the launch had created instance {first.instance_id}, now terminated"
    )
    released, ran = state.segments
    assert (released.provider, released.cost_micros) == ("flaky", 0)
    assert ran.provider == "steady"
    assert state.captured_micros == PRICE
    charges = {
        job.job_id: job
        for job in ledger.variance_report(ledger_engine, include_all=True, limit=10_000)
    }
    assert charges[input.job_id].segments == 2

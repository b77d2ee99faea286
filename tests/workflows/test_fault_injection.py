"""Many jobs against providers that fail at random on every call.

Every job must still reach a final status, no instance may be left live at any provider, and
the ledger must verify clean.
"""

import random

import pytest

import ledger
from providers.base import (
    InstanceStatus,
    Offer,
    ProvisionRequest,
    QuoteRequest,
    TransientProviderError,
)
from providers.fake import FakeFaults, FakeProvider
from tests.conftest import fresh_pg_database
from tests.workflows.test_job_workflow import (
    CREDIT,
    HOUR,
    fake,
    fund,
    job_input,
    job_worker,
    start,
)
from workflows.types import FINAL_JOB_STATUSES, JobState

JOBS = 24


class FlakyProvider:
    """Wraps a fake provider and raises TransientProviderError on a share of every call.

    A failing `provision` fails after the launch half the time, as a create that timed out at
    the provider after it made the instance: the retry must adopt it, not launch a second one.
    """

    def __init__(self, inner: FakeProvider, failure_rate: float, seed: int) -> None:
        self.inner = inner
        self.name = inner.name
        self._failure_rate = failure_rate
        self._random = random.Random(seed)

    def _fail(self, call: str) -> None:
        if self._random.random() < self._failure_rate:
            raise TransientProviderError(f"injected fault in {call} at {self.name}")

    async def quote(self, request: QuoteRequest) -> list[Offer]:
        self._fail("quote")
        return await self.inner.quote(request)

    async def provision(self, request: ProvisionRequest) -> str:
        if self._random.random() < 0.5:
            self._fail("provision before launch")
            return await self.inner.provision(request)
        instance_id = await self.inner.provision(request)
        self._fail("provision after launch")
        return instance_id

    async def status(self, instance_id: str, now: float) -> InstanceStatus:
        self._fail("status")
        return await self.inner.status(instance_id, now)

    async def terminate(self, instance_id: str, now: float) -> InstanceStatus:
        self._fail("terminate")
        return await self.inner.terminate(instance_id, now)


@pytest.fixture
def own_ledger():
    """A ledger database of this test's own, so that verifying it reads no other test's rows."""
    with fresh_pg_database() as url:
        ledger.upgrade(url)
        engine = ledger.create_ledger_engine(url)
        yield engine
        engine.dispose()


async def test_random_faults_leave_no_instance_and_clean_ledger(time_env, own_ledger, tenant):
    ledger_engine = own_ledger
    fakes = [
        fake("flaky-a", price_per_hour_micros=1 * CREDIT, run_seconds=HOUR),
        fake("flaky-b", price_per_hour_micros=2 * CREDIT, run_seconds=2 * HOUR),
        fake(
            "flaky-c",
            price_per_hour_micros=3 * CREDIT,
            run_seconds=HOUR,
            faults=FakeFaults(crash_after_seconds=30 * 60),
        ),
    ]
    providers = [FlakyProvider(inner, 0.3, seed) for seed, inner in enumerate(fakes)]
    fund(ledger_engine, tenant, JOBS * 10 * CREDIT)

    async with job_worker(time_env, ledger_engine, providers) as task_queue:
        handles = []
        for number in range(JOBS):
            input = job_input(tenant, (2 + number % 5) * CREDIT)
            input.policy = ["balanced", "cheapest", "fastest"][number % 3]
            handles.append(await start(time_env, task_queue, input))
        # One result at a time: the test server's automatic time skipping is switched on and
        # off around each result call, and concurrent calls interleave those switches.
        states: list[JobState] = [await handle.result() for handle in handles]

    assert all(state.status in FINAL_JOB_STATUSES for state in states)
    assert sum(inner.live_instances() for inner in fakes) == 0
    assert all(state.held_micros == 0 for state in states)
    captured = sum(state.captured_micros for state in states)
    balances = ledger.get_balances(ledger_engine, tenant)
    assert balances.held_micros == 0
    assert balances.available_micros == JOBS * 10 * CREDIT - captured
    report = ledger.verify_ledger(ledger_engine)
    assert report.ok, str(report)
    launched = sum(inner.launch_count for inner in fakes)
    attempts_launched = sum(1 for s in states for a in s.attempts if a.instance_id)
    assert launched == attempts_launched, f"{launched} launches for {attempts_launched} attempts"

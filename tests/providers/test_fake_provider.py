"""FakeProvider: offers, the simulated timeline on the caller's clock, faults, idempotency."""

import asyncio
from pathlib import Path

import pytest

from providers.base import (
    InstanceNotFound,
    InstanceState,
    InstanceStatus,
    ManagedInstance,
    Offer,
    OutOfCapacity,
    PermanentProviderError,
    ProvisionRequest,
    QuoteRequest,
    TransientProviderError,
)
from providers.fake import FakeFaults, FakeProvider

PRICE_PER_HOUR_MICROS = 2_500_000
SPOT_PRICE_PER_HOUR_MICROS = 900_000
LAUNCHED_AT = 1_700_000_000.0
START_SECONDS = 20
RUN_SECONDS = 120


def _provider(**overrides) -> FakeProvider:
    arguments = {
        "price_per_hour_micros": PRICE_PER_HOUR_MICROS,
        "gpu_types": ["A10G", "A100"],
        "start_seconds": START_SECONDS,
        "run_seconds": RUN_SECONDS,
        "spot_price_per_hour_micros": SPOT_PRICE_PER_HOUR_MICROS,
    }
    arguments.update(overrides)
    return FakeProvider(**arguments)


def _offer(*, spot: bool = False, gpu_count: int = 1, region: str = "sim-1") -> Offer:
    price = SPOT_PRICE_PER_HOUR_MICROS if spot else PRICE_PER_HOUR_MICROS
    return Offer(
        provider="fake",
        instance_type=f"sim-a100-x{gpu_count}",
        region=region,
        gpu_type="A100",
        gpu_count=gpu_count,
        spot=spot,
        price_per_hour_micros=price * gpu_count,
        start_seconds=START_SECONDS,
    )


def _request(token: str = "job-1-1", *, spot: bool = False, now: float = LAUNCHED_AT) -> ProvisionRequest:
    return ProvisionRequest(
        client_token=token,
        job_id="job-1",
        offer=_offer(spot=spot),
        image="busybox",
        command=["true"],
        now=now,
    )


async def _status_at(provider: FakeProvider, instance_id: str, seconds: float) -> InstanceStatus:
    return await provider.status(instance_id, now=LAUNCHED_AT + seconds)


async def test_quote_known_gpu_returns_on_demand_offer():
    offers = await _provider(spot_price_per_hour_micros=None).quote(
        QuoteRequest(gpu_type="A100", gpu_count=1, spot_ok=True)
    )

    assert offers == [_offer()]


async def test_quote_price_scales_with_gpu_count():
    offers = await _provider().quote(QuoteRequest(gpu_type="A100", gpu_count=4))

    assert offers == [_offer(gpu_count=4)]
    assert offers[0].price_per_hour_micros == 10_000_000


async def test_quote_spot_ok_adds_spot_offer():
    offers = await _provider().quote(QuoteRequest(gpu_type="A100", gpu_count=2, spot_ok=True))

    assert offers == [_offer(gpu_count=2), _offer(spot=True, gpu_count=2)]


async def test_quote_matches_gpu_type_ignoring_case():
    offers = await _provider().quote(QuoteRequest(gpu_type="a100", gpu_count=1))

    assert offers == [_offer()]


async def test_quote_returns_offers_per_region():
    offers = await _provider(regions=("sim-1", "sim-2")).quote(QuoteRequest(gpu_type="A100", gpu_count=1))

    assert offers == [_offer(region="sim-1"), _offer(region="sim-2")]


async def test_quote_minimum_billed_seconds_is_on_offer():
    offers = await _provider(minimum_billed_seconds=60).quote(QuoteRequest(gpu_type="A100", gpu_count=1))

    assert offers[0].minimum_billed_seconds == 60


@pytest.mark.parametrize(
    "request_",
    [
        QuoteRequest(gpu_type="H100", gpu_count=1),
        QuoteRequest(gpu_type=None, gpu_count=0),
        QuoteRequest(gpu_type="A100", gpu_count=0),
    ],
)
async def test_quote_unoffered_request_returns_nothing(request_: QuoteRequest):
    offers = await _provider().quote(request_)

    assert offers == []


async def test_quote_error_fault_raises_transient():
    provider = _provider(faults=FakeFaults(quote_error=True))

    with pytest.raises(TransientProviderError, match="provider fake: simulated quote failure"):
        await provider.quote(QuoteRequest(gpu_type="A100", gpu_count=1))


async def test_quote_delay_fault_exceeds_timeout():
    provider = _provider(faults=FakeFaults(quote_delay_seconds=1.0))

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(provider.quote(QuoteRequest(gpu_type="A100", gpu_count=1)), 0.05)


async def test_instance_goes_pending_running_succeeded():
    provider = _provider()
    instance_id = await provider.provision(_request())

    expected = [
        (0, InstanceStatus(instance_id, InstanceState.PENDING, billable_seconds=0)),
        (10.5, InstanceStatus(instance_id, InstanceState.PENDING, billable_seconds=11)),
        (20, InstanceStatus(instance_id, InstanceState.RUNNING, billable_seconds=20)),
        (139.2, InstanceStatus(instance_id, InstanceState.RUNNING, billable_seconds=140)),
        (140, InstanceStatus(instance_id, InstanceState.SUCCEEDED, billable_seconds=140, exit_code=0)),
        (5000, InstanceStatus(instance_id, InstanceState.SUCCEEDED, billable_seconds=140, exit_code=0)),
    ]
    for seconds, status in expected:
        assert await _status_at(provider, instance_id, seconds) == status, f"at +{seconds} s"


async def test_terminate_running_stops_billing_at_now():
    provider = _provider()
    instance_id = await provider.provision(_request())

    terminated = await provider.terminate(instance_id, now=LAUNCHED_AT + 50.2)
    later = await _status_at(provider, instance_id, 5000)

    assert terminated == InstanceStatus(instance_id, InstanceState.TERMINATED, billable_seconds=51)
    assert later == terminated
    assert provider.live_instances() == 0


async def test_terminate_pending_returns_terminated():
    provider = _provider()
    instance_id = await provider.provision(_request())

    terminated = await provider.terminate(instance_id, now=LAUNCHED_AT + 5)

    assert terminated == InstanceStatus(instance_id, InstanceState.TERMINATED, billable_seconds=5)


async def test_terminate_after_end_keeps_final_state_and_billing():
    provider = _provider()
    instance_id = await provider.provision(_request())

    terminated = await provider.terminate(instance_id, now=LAUNCHED_AT + 900)

    assert terminated == InstanceStatus(
        instance_id, InstanceState.SUCCEEDED, billable_seconds=140, exit_code=0
    )
    assert provider.live_instances() == 0


async def test_terminate_twice_keeps_first_time():
    provider = _provider()
    instance_id = await provider.provision(_request())

    first = await provider.terminate(instance_id, now=LAUNCHED_AT + 30)
    second = await provider.terminate(instance_id, now=LAUNCHED_AT + 90)

    assert first.billable_seconds == 30
    assert second == first


async def test_succeeded_instance_is_live_until_terminated():
    provider = _provider()
    instance_id = await provider.provision(_request())

    status = await _status_at(provider, instance_id, 1000)
    live_before = provider.live_instances()
    await provider.terminate(instance_id, now=LAUNCHED_AT + 1000)

    assert status.state == InstanceState.SUCCEEDED
    assert live_before == 1
    assert provider.live_instances() == 0


async def test_provision_same_token_adopts_instance():
    provider = _provider()

    first = await provider.provision(_request("job-1-1"))
    second = await provider.provision(_request("job-1-1", now=LAUNCHED_AT + 60))
    other = await provider.provision(_request("job-1-2"))

    assert second == first
    assert other != first
    assert provider.launch_count == 2
    assert provider.live_instances() == 2
    assert provider.instances[first].launched_at == LAUNCHED_AT


async def test_provision_adopts_despite_capacity_fault():
    provider = _provider()
    first = await provider.provision(_request())
    provider.faults.no_capacity = True

    adopted = await provider.provision(_request())

    assert adopted == first
    assert provider.launch_count == 1


async def test_no_capacity_fault_raises_out_of_capacity():
    provider = _provider(faults=FakeFaults(no_capacity=True))

    with pytest.raises(OutOfCapacity, match="provider fake: no capacity for sim-a100-x1 in sim-1"):
        await provider.provision(_request())
    assert provider.launch_count == 0
    assert provider.live_instances() == 0


async def test_provision_error_fault_raises_permanent():
    provider = _provider(faults=FakeFaults(provision_error=True))

    with pytest.raises(PermanentProviderError, match="provider fake: simulated provisioning error"):
        await provider.provision(_request())
    assert provider.launch_count == 0


async def test_crash_fault_fails_instance_after_running_seconds():
    provider = _provider(faults=FakeFaults(crash_after_seconds=30))
    instance_id = await provider.provision(_request())

    before = await _status_at(provider, instance_id, 49.5)
    crashed = await _status_at(provider, instance_id, 50)

    assert before.state == InstanceState.RUNNING
    assert crashed == InstanceStatus(
        instance_id, InstanceState.FAILED, billable_seconds=50, exit_code=None, message="instance crashed"
    )


async def test_crash_fault_after_run_end_does_not_fire():
    provider = _provider(faults=FakeFaults(crash_after_seconds=RUN_SECONDS))
    instance_id = await provider.provision(_request())

    status = await _status_at(provider, instance_id, 1000)

    assert status.state == InstanceState.SUCCEEDED
    assert status.billable_seconds == 140


async def test_preempt_fault_preempts_spot_instance():
    provider = _provider(faults=FakeFaults(preempt_after_seconds=40))
    instance_id = await provider.provision(_request(spot=True))

    status = await _status_at(provider, instance_id, 1000)

    assert status == InstanceStatus(
        instance_id,
        InstanceState.PREEMPTED,
        billable_seconds=60,
        exit_code=None,
        message="spot instance preempted",
    )


async def test_preempt_fault_spares_on_demand_instance():
    provider = _provider(faults=FakeFaults(preempt_after_seconds=40))
    instance_id = await provider.provision(_request(spot=False))

    status = await _status_at(provider, instance_id, 1000)

    assert status.state == InstanceState.SUCCEEDED


async def test_earlier_fault_wins_and_crash_wins_a_tie():
    provider = _provider(faults=FakeFaults(crash_after_seconds=50, preempt_after_seconds=40))
    preempted_id = await provider.provision(_request("job-1-1", spot=True))
    provider.faults.crash_after_seconds = 40
    crashed_id = await provider.provision(_request("job-1-2", spot=True))

    preempted = await _status_at(provider, preempted_id, 1000)
    crashed = await _status_at(provider, crashed_id, 1000)

    assert preempted.state == InstanceState.PREEMPTED
    assert crashed.state == InstanceState.FAILED


async def test_fault_change_after_launch_spares_instance():
    provider = _provider()
    instance_id = await provider.provision(_request())
    provider.faults.crash_after_seconds = 1

    status = await _status_at(provider, instance_id, 1000)

    assert status.state == InstanceState.SUCCEEDED


async def test_unknown_instance_raises_permanent():
    provider = _provider()

    with pytest.raises(PermanentProviderError, match="fake instance fake-nope not found"):
        await provider.status("fake-nope", now=LAUNCHED_AT)
    with pytest.raises(PermanentProviderError, match="fake instance fake-nope not found"):
        await provider.terminate("fake-nope", now=LAUNCHED_AT)


async def test_provision_unoffered_offer_raises_permanent():
    provider = _provider()
    other_provider = _request("job-1-1")
    other_provider.offer.provider = "local"
    other_region = _request("job-1-2")
    other_region.offer.region = "sim-9"
    other_gpu = _request("job-1-3")
    other_gpu.offer.gpu_type = "H100"

    with pytest.raises(PermanentProviderError, match="offer is for provider 'local', not 'fake'"):
        await provider.provision(other_provider)
    with pytest.raises(PermanentProviderError, match="provider fake has no region 'sim-9'"):
        await provider.provision(other_region)
    with pytest.raises(PermanentProviderError, match="provider fake does not offer GPU type 'H100'"):
        await provider.provision(other_gpu)
    assert provider.launch_count == 0


async def test_state_file_keeps_instances_across_restart(tmp_path: Path):
    state_file = tmp_path / "state" / "fake.json"
    provider = _provider(state_file=state_file)
    running_id = await provider.provision(_request("job-1-1"))
    done_id = await provider.provision(_request("job-1-2", spot=True))
    await provider.terminate(done_id, now=LAUNCHED_AT + 30)

    restarted = _provider(state_file=state_file)
    running = await _status_at(restarted, running_id, 60)
    done = await _status_at(restarted, done_id, 60)
    adopted = await restarted.provision(_request("job-1-1"))

    assert running == InstanceStatus(running_id, InstanceState.RUNNING, billable_seconds=60)
    assert done == InstanceStatus(done_id, InstanceState.TERMINATED, billable_seconds=30)
    assert adopted == running_id
    assert restarted.launch_count == 2
    assert restarted.live_instances() == 1
    assert restarted.instances[done_id].offer == _offer(spot=True)


async def test_list_managed_instances_returns_unterminated_instances():
    provider = _provider()
    kept = await provider.provision(_request("job-1-1"))
    gone = await provider.provision(_request("job-1-2"))
    await provider.terminate(gone, now=LAUNCHED_AT + 1)

    managed = await provider.list_managed_instances()

    assert managed == [ManagedInstance(instance_id=kept, job_id="job-1", client_token="job-1-1")]


async def test_overcharge_fault_reports_higher_price():
    provider = _provider(faults=FakeFaults(overcharge_percent=15))
    instance_id = await provider.provision(_request())

    running = await _status_at(provider, instance_id, START_SECONDS + 1)
    final = await provider.terminate(instance_id, now=LAUNCHED_AT + START_SECONDS + 2)

    expected = -(-PRICE_PER_HOUR_MICROS * 115 // 100)
    assert running.price_per_hour_micros == expected
    assert final.price_per_hour_micros == expected


async def test_no_fault_reports_no_price():
    provider = _provider()
    instance_id = await provider.provision(_request())

    assert (await _status_at(provider, instance_id, 1)).price_per_hour_micros is None


async def test_absent_instance_is_never_listed():
    provider = _provider(faults=FakeFaults(status_absent=True))
    instance_id = await provider.provision(_request())

    with pytest.raises(InstanceNotFound, match=f"fake instance {instance_id} not found"):
        await _status_at(provider, instance_id, 1)
    with pytest.raises(InstanceNotFound):
        await provider.terminate(instance_id, now=LAUNCHED_AT + 2)
    assert provider.launch_count == 1
    assert provider.live_instances() == 0
    assert await provider.list_managed_instances() == []


async def test_find_instance_by_client_token():
    provider = _provider()
    instance_id = await provider.provision(_request("job-1-1"))

    assert await provider.find_instance("job-1-1") == instance_id
    assert await provider.find_instance("job-1-2") is None

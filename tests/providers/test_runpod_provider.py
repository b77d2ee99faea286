"""RunPodProvider against a local stand-in of RunPod's APIs served over HTTP on 127.0.0.1."""

import time
from collections.abc import AsyncIterator, Callable, Iterator
from decimal import Decimal

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
from providers.runpod import WRAPPER_SCRIPT, RunPodProvider, pod_name
from providers.runpod_http import RetryPolicy, RunPodHttp
from tests.providers.runpod_stand_in import (
    API_KEY,
    GpuTypePrice,
    RunPodState,
    StandInServer,
)

A100_SXM = "NVIDIA A100-SXM4-80GB"
A100_PCIE = "NVIDIA A100 80GB PCIe"
STARTED_AT = "2026-01-02T03:04:05.000Z"
STARTED_AT_EPOCH = 1767323045.0
CREDITS_PER_USD = Decimal("1.5")
FAST_RETRY = RetryPolicy(max_attempts=3, backoff_seconds=0.01, max_backoff_seconds=5.0)


@pytest.fixture(scope="module")
def stand_in() -> Iterator[StandInServer]:
    state = RunPodState(
        gpu_types=[
            GpuTypePrice(A100_SXM, "A100 SXM", 80, on_demand="1.89", minimum_bid="1.05"),
            GpuTypePrice(
                A100_PCIE, "A100 PCIe", 80, on_demand="1.64", minimum_bid=None, stock_status="Low"
            ),
            GpuTypePrice("NVIDIA L4", "L4", 24, on_demand="0.1234567", minimum_bid="0.1"),
        ]
    )
    server = StandInServer(state)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def state(stand_in: StandInServer) -> RunPodState:
    stand_in.state.reset()
    return stand_in.state


@pytest.fixture
async def make_provider(stand_in: StandInServer) -> AsyncIterator[Callable[..., RunPodProvider]]:
    made: list[RunPodProvider] = []

    def make(**arguments) -> RunPodProvider:
        provider = _provider(stand_in, **arguments)
        made.append(provider)
        return provider

    yield make
    for provider in made:
        await provider.aclose()


def _provider(
    stand_in: StandInServer, *, api_key: str = API_KEY, clock=time.time
) -> RunPodProvider:
    http = RunPodHttp(
        api_key=api_key,
        rest_url=stand_in.rest_url,
        graphql_url=stand_in.graphql_url,
        timeout_seconds=5.0,
        retry=FAST_RETRY,
    )
    return RunPodProvider(
        http=http,
        credits_per_usd=CREDITS_PER_USD,
        start_seconds=90,
        lookup_attempts=2,
        lookup_delay_seconds=0.01,
        clock=clock,
    )


def _offer(
    *, spot: bool = False, gpu_type: str = A100_SXM, gpu_count: int = 2, price: int = 5_670_000
) -> Offer:
    return Offer(
        provider="runpod",
        instance_type=gpu_type,
        region="secure",
        gpu_type=gpu_type,
        gpu_count=gpu_count,
        spot=spot,
        price_per_hour_micros=price,
        start_seconds=90,
        reliability=0.95,
    )


def _request(offer: Offer, token: str = "job-7-1") -> ProvisionRequest:
    return ProvisionRequest(
        client_token=token,
        job_id="job-7",
        offer=offer,
        image="python:3.11-slim",
        command=["python3", "-c", "print('hi')"],
        env={"MODE": "test"},
    )


async def test_quote_a100_returns_on_demand_and_spot_offers(state, make_provider):
    offers = await make_provider().quote(QuoteRequest(gpu_type="A100", gpu_count=2, spot_ok=True))

    assert offers == [
        _offer(),
        Offer(
            provider="runpod",
            instance_type=A100_SXM,
            region="secure",
            gpu_type=A100_SXM,
            gpu_count=2,
            spot=True,
            price_per_hour_micros=3_150_000,
            start_seconds=90,
            reliability=0.95 * 0.8,
        ),
        Offer(
            provider="runpod",
            instance_type=A100_PCIE,
            region="secure",
            gpu_type=A100_PCIE,
            gpu_count=2,
            spot=False,
            price_per_hour_micros=4_920_000,
            start_seconds=90,
            reliability=0.5,
        ),
    ]


async def test_quote_without_spot_ok_has_no_spot_offer(state, make_provider):
    offers = await make_provider().quote(QuoteRequest(gpu_type="A100", gpu_count=2))

    assert [offer.spot for offer in offers] == [False, False]


async def test_quote_rounds_price_up_to_micro_credit(state, make_provider):
    offers = await make_provider().quote(QuoteRequest(gpu_type="L4", gpu_count=1))

    # 0.1234567 USD * 1.5 credits per USD = 0.18518505 credits, rounded up.
    assert offers[0].price_per_hour_micros == 185_186


async def test_quote_accepts_runpod_gpu_type_id(state, make_provider):
    offers = await make_provider().quote(QuoteRequest(gpu_type=A100_PCIE, gpu_count=1))

    assert [offer.instance_type for offer in offers] == [A100_PCIE]


async def test_quote_gpu_runpod_lacks_returns_nothing(state, make_provider):
    offers = await make_provider().quote(QuoteRequest(gpu_type="A10G", gpu_count=1))

    assert offers == []


async def test_provision_on_demand_creates_named_pod(state, make_provider):
    pod_id = await make_provider().provision(_request(_offer()))

    pod = state.pods[pod_id]
    assert state.live_pods() == 1
    assert pod["name"] == "cac-job-7-1"
    assert pod["interruptible"] is False
    assert pod["gpu"] == {"id": A100_SXM, "count": 2}
    assert pod["env"] == {"MODE": "test", "CAC_JOB_ID": "job-7"}
    assert pod["dockerStartCmd"] == ["python3", "-c", "print('hi')"]


async def test_provision_same_token_adopts_pod(state, make_provider):
    provider = make_provider()

    first = await provider.provision(_request(_offer()))
    second = await make_provider().provision(_request(_offer()))

    assert second == first
    assert state.live_pods() == 1


async def test_provision_spot_bids_quoted_price_per_gpu(state, make_provider):
    provider = make_provider()
    offers = await provider.quote(QuoteRequest(gpu_type="A100", gpu_count=2, spot_ok=True))
    spot_offer = next(offer for offer in offers if offer.spot)

    pod_id = await provider.provision(_request(spot_offer))

    pod = state.pods[pod_id]
    assert state.live_pods() == 1
    assert pod["interruptible"] is True
    assert pod["_bid_per_gpu"] == 1.05
    assert pod["env"] == {"MODE": "test", "CAC_JOB_ID": "job-7"}
    assert pod["dockerStartCmd"] == [
        f"sh -c '{WRAPPER_SCRIPT}' cac-job python3 -c 'print('\"'\"'hi'\"'\"')'"
    ]


async def test_spot_bid_below_minimum(state, make_provider):
    with pytest.raises(OutOfCapacity, match="no longer any instances available"):
        await make_provider().provision(_request(_offer(spot=True, price=3_000_000)))

    assert state.live_pods() == 0


async def test_status_running_bills_seconds_since_start(state, make_provider):
    pod_id = await make_provider().provision(_request(_offer()))
    state.pods[pod_id]["lastStartedAt"] = STARTED_AT
    provider = make_provider(clock=lambda: STARTED_AT_EPOCH + 90.2)

    status = await provider.status(pod_id, now=0.0)

    # costPerHr of two A100s at 1.89 USD each, at 1.5 credits per USD.
    assert status == InstanceStatus(
        pod_id, InstanceState.RUNNING, billable_seconds=91, price_per_hour_micros=5_670_000
    )


async def test_status_before_start_is_pending(state, make_provider):
    state.start_pending = True
    pod_id = await make_provider().provision(_request(_offer()))

    status = await make_provider().status(pod_id, now=0.0)

    assert status == InstanceStatus(
        pod_id, InstanceState.PENDING, billable_seconds=0, price_per_hour_micros=5_670_000
    )


async def test_status_reports_drifted_cost_per_hour(state, make_provider):
    state.charge_per_gpu = "2.00"
    pod_id = await make_provider().provision(_request(_offer()))

    status = await make_provider().status(pod_id, now=0.0)

    assert status.price_per_hour_micros == 6_000_000


async def test_status_stopped_pod_succeeded_with_run_time(state, make_provider):
    pod_id = await make_provider().provision(_request(_offer()))
    pod = state.pods[pod_id]
    pod["lastStartedAt"] = STARTED_AT
    pod["desiredStatus"] = "EXITED"
    pod["lastStatusChange"] = "Exited by user: Fri Jan 02 2026 00:06:05 GMT-0300 (BRT)"

    status = await make_provider().status(pod_id, now=0.0)

    assert status.state is InstanceState.SUCCEEDED
    assert status.billable_seconds == 120
    assert status.exit_code is None
    assert "does not report the exit code" in status.message


async def test_status_unknown_pod_raises_not_found(state, make_provider):
    with pytest.raises(InstanceNotFound, match="RunPod pod nosuchpod not found"):
        await make_provider().status("nosuchpod", now=0.0)


async def test_terminate_deletes_pod_and_confirms(state, make_provider):
    pod_id = await make_provider().provision(_request(_offer()))
    state.pods[pod_id]["lastStartedAt"] = STARTED_AT
    provider = make_provider(clock=lambda: STARTED_AT_EPOCH + 300)

    final = await provider.terminate(pod_id, now=0.0)
    again = await provider.terminate(pod_id, now=0.0)

    assert final == InstanceStatus(
        pod_id, InstanceState.TERMINATED, billable_seconds=300, message="terminated on request"
    )
    assert again == final
    assert state.live_pods() == 0
    assert state.requests.count(("DELETE", f"/v1/pods/{pod_id}")) == 1


async def test_terminate_while_shutting_down_raises_transient(state, make_provider):
    pod_id = await make_provider().provision(_request(_offer()))
    state.running_after_delete = 1
    provider = make_provider()

    with pytest.raises(TransientProviderError, match="still RUNNING after the delete"):
        await provider.terminate(pod_id, now=0.0)
    final = await provider.terminate(pod_id, now=0.0)

    assert final.state is InstanceState.TERMINATED
    assert state.live_pods() == 0


async def test_terminate_stopped_pod_keeps_its_outcome(state, make_provider):
    pod_id = await make_provider().provision(_request(_offer()))
    pod = state.pods[pod_id]
    pod["lastStartedAt"] = STARTED_AT
    pod["desiredStatus"] = "EXITED"
    pod["lastStatusChange"] = "Exited by user: Fri Jan 02 2026 03:05:05 GMT+0000 (UTC)"

    final = await make_provider().terminate(pod_id, now=0.0)

    assert final.state is InstanceState.SUCCEEDED
    assert final.billable_seconds == 60
    assert state.live_pods() == 0


async def test_terminate_unknown_pod_raises_not_found(state, make_provider):
    with pytest.raises(InstanceNotFound, match="RunPod pod nosuchpod not found"):
        await make_provider().terminate("nosuchpod", now=0.0)


async def test_provision_no_capacity_raises_out_of_capacity(state, make_provider):
    state.no_capacity = True

    with pytest.raises(OutOfCapacity, match="There are no longer any instances available"):
        await make_provider().provision(_request(_offer()))

    assert state.live_pods() == 0


async def test_spot_no_capacity_raises_out_of_capacity(state, make_provider):
    state.no_capacity = True

    with pytest.raises(OutOfCapacity, match="There are no longer any instances available"):
        await make_provider().provision(_request(_offer(spot=True, price=3_150_000)))


async def test_wrong_api_key_raises_permanent(state, make_provider):
    with pytest.raises(PermanentProviderError, match=r"rejected the API key \(HTTP 401\)"):
        await make_provider(api_key="wrong").quote(QuoteRequest(gpu_type="A100", gpu_count=1))


async def test_invalid_request_raises_permanent(state, make_provider):
    with pytest.raises(PermanentProviderError, match="HTTP 400: gpuCount must be at least 1"):
        await make_provider().provision(_request(_offer(gpu_count=0, price=0)))


async def test_server_errors_are_retried(state, make_provider):
    state.server_errors = 2

    offers = await make_provider().quote(QuoteRequest(gpu_type="L4", gpu_count=1))

    assert len(offers) == 1
    assert state.requests == [("POST", "/graphql")] * 3


async def test_persistent_server_errors_raise_transient(state, make_provider):
    state.server_errors = 10

    with pytest.raises(TransientProviderError, match="HTTP 500 3 times: internal server error"):
        await make_provider().status("anypod", now=0.0)

    assert len(state.requests) == 3


async def test_rate_limit_waits_retry_after(state, make_provider):
    state.rate_limited = 1
    state.retry_after = "1"
    provider = make_provider()

    started = time.monotonic()
    offers = await provider.quote(QuoteRequest(gpu_type="L4", gpu_count=1))
    elapsed = time.monotonic() - started

    assert len(offers) == 1
    assert elapsed >= 1.0
    assert state.requests == [("POST", "/graphql")] * 2


async def test_rate_limited_create_is_retried_once_created(state, make_provider):
    state.rate_limited_creates = 2

    pod_id = await make_provider().provision(_request(_offer()))

    assert state.live_pods() == 1
    assert list(state.pods) == [pod_id]
    assert state.requests.count(("POST", "/v1/pods")) == 3


async def test_rate_limited_spot_bid_is_retried_once_created(state, make_provider):
    state.rate_limited_creates = 1

    pod_id = await make_provider().provision(_request(_offer(spot=True, price=3_150_000)))

    assert state.live_pods() == 1
    assert list(state.pods) == [pod_id]


async def test_create_succeeded_but_answered_500_leaves_one_pod(state, make_provider):
    state.fail_after_create = True
    provider = make_provider()

    pod_id = await provider.provision(_request(_offer()))
    again = await provider.provision(_request(_offer()))

    assert state.live_pods() == 1
    assert list(state.pods) == [pod_id]
    assert again == pod_id
    assert state.requests.count(("POST", "/v1/pods")) == 1


async def test_create_failed_with_500(state, make_provider):
    state.fail_create = True

    with pytest.raises(TransientProviderError, match="may or may not have been created"):
        await make_provider().provision(_request(_offer()))

    assert state.live_pods() == 0


async def test_list_managed_instances_returns_live_cac_pods(state, make_provider):
    provider = make_provider()
    first = await provider.provision(_request(_offer(), token="job-7-1"))
    second = await provider.provision(_request(_offer(), token="job-7-2"))
    gone = await provider.provision(_request(_offer(), token="job-7-3"))
    await provider.terminate(gone, now=0.0)
    state.create_pod(
        name="someone-elses-pod",
        image="busybox",
        gpu_type_id=A100_SXM,
        gpu_count=1,
        interruptible=False,
        cost_per_hr="1.89",
        env={},
        start_cmd=[],
    )

    managed = await provider.list_managed_instances()

    assert sorted(managed, key=lambda instance: instance.client_token) == [
        ManagedInstance(instance_id=first, job_id="job-7", client_token="job-7-1"),
        ManagedInstance(instance_id=second, job_id="job-7", client_token="job-7-2"),
    ]


def test_pod_name_too_long_raises_permanent():
    with pytest.raises(PermanentProviderError, match="client token of 188 characters is too long"):
        pod_name("x" * 188)


def test_pod_name_prefixes_client_token():
    assert pod_name("job-1-2") == "cac-job-1-2"


async def test_find_instance_by_pod_name(state, make_provider):
    provider = make_provider()
    pod_id = await provider.provision(_request(_offer()))

    assert await provider.find_instance("job-7-1") == pod_id
    assert await provider.find_instance("job-7-2") is None

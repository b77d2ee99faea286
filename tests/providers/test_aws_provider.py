"""AwsProvider against moto's in-process EC2 emulator, and botocore's Stubber for EC2 errors.

moto handles EC2 calls inside this process (`mock_aws`), so nothing leaves the machine. moto
never raises capacity or throttling errors, and terminates instances at once, so those responses
are injected with botocore's Stubber on a separate client: the Stubber returns each queued
response in place of sending the request.
"""

import base64
import itertools
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal

import boto3
import pytest
from botocore.stub import Stubber
from moto import mock_aws

from providers.aws import AwsProvider, ec2_client_token, instance_status
from providers.aws_user_data import job_user_data
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

REGION = "us-east-1"
CREDITS_PER_USD = Decimal("1.5")
LAUNCHED_AT = datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc)


@pytest.fixture(scope="module")
def moto_ec2() -> Iterator[None]:
    with pytest.MonkeyPatch.context() as patch, mock_aws():
        for variable in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN"):
            patch.delenv(variable, raising=False)
        patch.setenv("AWS_ACCESS_KEY_ID", "testing")
        patch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
        yield


@pytest.fixture
def ec2(moto_ec2, monkeypatch):
    # A new moto account per test starts with no instances, and is much faster than a new
    # mock_aws() per test.
    monkeypatch.setenv("MOTO_ACCOUNT_ID", str(next(_ACCOUNT_IDS)))
    return boto3.client("ec2", region_name=REGION)


_ACCOUNT_IDS = itertools.count(100_000_000_001)


@pytest.fixture
def ami_id(ec2) -> str:
    # moto launches from any AMI id; listing its real AMIs would take a second per test.
    return "ami-0c0ffee0c0ffee000"


def _provider(
    client, ami_id: str = "ami-12345678", *, region: str = REGION, clock=None
) -> AwsProvider:
    arguments = {}
    if clock is not None:
        arguments["clock"] = clock
    return AwsProvider(
        region=region, ami_id=ami_id, credits_per_usd=CREDITS_PER_USD, client=client, **arguments
    )


def _stubbed_client():
    # The endpoint is a closed loopback port; the Stubber responds before anything is sent.
    client = boto3.client(
        "ec2",
        region_name=REGION,
        endpoint_url="http://127.0.0.1:9",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    return client, Stubber(client)


def _offer(*, spot: bool = False, region: str = REGION, instance_type: str = "g5.xlarge") -> Offer:
    return Offer(
        provider="aws",
        instance_type=instance_type,
        region=region,
        gpu_type="A10G",
        gpu_count=1,
        spot=spot,
        price_per_hour_micros=1_509_000,
        start_seconds=180,
        reliability=0.9,
        minimum_billed_seconds=60,
    )


def _request(offer: Offer, token: str = "job-9-1") -> ProvisionRequest:
    return ProvisionRequest(
        client_token=token,
        job_id="job-9",
        offer=offer,
        image="python:3.11-slim",
        command=["python3", "-c", "print('done')"],
        env={"MODE": "test"},
    )


def _instances(ec2) -> list[dict]:
    reservations = ec2.describe_instances()["Reservations"]
    return [instance for reservation in reservations for instance in reservation["Instances"]]


async def test_quote_a10g_returns_table_and_spot_prices(ec2):
    offers = await _provider(ec2).quote(QuoteRequest(gpu_type="A10G", gpu_count=1, spot_ok=True))

    assert offers == [
        _offer(),
        Offer(
            provider="aws",
            instance_type="g5.xlarge",
            region="us-east-1a",
            gpu_type="A10G",
            gpu_count=1,
            spot=True,
            # moto's spot price for every type is 0.00001 USD; 1.5 credits per USD.
            price_per_hour_micros=15,
            start_seconds=180,
            reliability=0.7,
            minimum_billed_seconds=60,
        ),
    ]


@pytest.mark.parametrize(
    ("gpu_type", "gpu_count", "instance_type", "offered_count", "price_micros"),
    [
        ("A10G", 2, "g5.12xlarge", 4, 8_508_000),
        ("l4", 1, "g6.xlarge", 1, 1_207_200),
        ("L4", 4, "g6.12xlarge", 4, 6_902_400),
        ("A100", 1, "p4d.24xlarge", 8, 32_936_463),
        ("H100", 1, "p5.4xlarge", 1, 10_320_000),
        ("H100", 3, "p5.48xlarge", 8, 82_560_000),
    ],
)
async def test_quote_picks_smallest_fitting_instance(
    ec2, gpu_type, gpu_count, instance_type, offered_count, price_micros
):
    offers = await _provider(ec2).quote(QuoteRequest(gpu_type=gpu_type, gpu_count=gpu_count))

    assert len(offers) == 1
    assert offers[0].instance_type == instance_type
    assert offers[0].gpu_count == offered_count
    assert offers[0].price_per_hour_micros == price_micros


async def test_quote_gpu_without_instance_returns_nothing(ec2):
    assert await _provider(ec2).quote(QuoteRequest(gpu_type="A10G", gpu_count=5)) == []
    assert await _provider(ec2).quote(QuoteRequest(gpu_type="T4", gpu_count=1)) == []
    assert await _provider(ec2).quote(QuoteRequest(gpu_type=None, gpu_count=0)) == []


async def test_quote_region_without_price_table_offers_spot_only(ec2):
    client = boto3.client("ec2", region_name="eu-west-1")
    provider = _provider(client, region="eu-west-1")

    on_demand = await provider.quote(QuoteRequest(gpu_type="A10G", gpu_count=1))
    with_spot = await provider.quote(QuoteRequest(gpu_type="A10G", gpu_count=1, spot_ok=True))

    assert on_demand == []
    assert [(offer.spot, offer.region) for offer in with_spot] == [(True, "eu-west-1a")]


async def test_provision_on_demand_launches_tagged_instance(ec2, ami_id):
    instance_id = await _provider(ec2, ami_id).provision(_request(_offer()))

    instances = _instances(ec2)
    tags = {tag["Key"]: tag["Value"] for tag in instances[0]["Tags"]}
    user_data = ec2.describe_instance_attribute(InstanceId=instance_id, Attribute="userData")
    shutdown = ec2.describe_instance_attribute(
        InstanceId=instance_id, Attribute="instanceInitiatedShutdownBehavior"
    )
    assert [instance["InstanceId"] for instance in instances] == [instance_id]
    assert instances[0]["InstanceType"] == "g5.xlarge"
    assert instances[0]["ImageId"] == ami_id
    assert instances[0].get("InstanceLifecycle") is None
    assert tags == {
        "Name": "cac-job-9",
        "cac:job-id": "job-9",
        "cac:client-token": "job-9-1",
        "cac:managed": "true",
    }
    assert base64.b64decode(user_data["UserData"]["Value"]).decode() == job_user_data(
        job_id="job-9",
        image="python:3.11-slim",
        command=["python3", "-c", "print('done')"],
        env={"MODE": "test"},
    )
    assert shutdown["InstanceInitiatedShutdownBehavior"]["Value"] == "terminate"


async def test_provision_same_token_returns_same_instance(ec2, ami_id):
    first = await _provider(ec2, ami_id).provision(_request(_offer()))
    second = await _provider(ec2, ami_id).provision(_request(_offer()))

    assert second == first
    assert len(_instances(ec2)) == 1


async def test_provision_spot_launches_spot_instance_in_zone(ec2, ami_id):
    instance_id = await _provider(ec2, ami_id).provision(
        _request(_offer(spot=True, region="us-east-1b"))
    )

    instance = _instances(ec2)[0]
    assert instance["InstanceId"] == instance_id
    assert instance["InstanceLifecycle"] == "spot"
    assert instance["Placement"]["AvailabilityZone"] == "us-east-1b"


async def test_provision_offer_of_other_provider_raises_permanent(ec2, ami_id):
    offer = _offer()
    offer.provider = "runpod"

    with pytest.raises(PermanentProviderError, match="offer is for provider 'runpod', not 'aws'"):
        await _provider(ec2, ami_id).provision(_request(offer))


async def test_status_running_bills_seconds_since_launch(ec2, ami_id):
    instance_id = await _provider(ec2, ami_id).provision(_request(_offer()))
    launched = _instances(ec2)[0]["LaunchTime"].timestamp()
    provider = _provider(ec2, ami_id, clock=lambda: launched + 42.5)

    status = await provider.status(instance_id, now=0.0)

    assert status == InstanceStatus(instance_id, InstanceState.RUNNING, billable_seconds=43)


async def test_status_unknown_instance_raises_not_found(ec2):
    with pytest.raises(InstanceNotFound, match="InvalidInstanceID.NotFound"):
        await _provider(ec2).status("i-0123456789abcdef0", now=0.0)


async def test_terminate_spot_reports_zone_spot_price(ec2, ami_id):
    provider = _provider(ec2, ami_id)
    instance_id = await provider.provision(_request(_offer(spot=True, region="us-east-1b")))

    final = await provider.terminate(instance_id, now=0.0)

    # moto's spot price for every type is 0.00001 USD; 1.5 credits per USD.
    assert final.price_per_hour_micros == 15


async def test_terminate_on_demand_reports_no_price(ec2, ami_id):
    provider = _provider(ec2, ami_id)
    instance_id = await provider.provision(_request(_offer()))

    final = await provider.terminate(instance_id, now=0.0)

    assert final.price_per_hour_micros is None


async def test_terminate_confirms_terminated_instance(ec2, ami_id):
    provider = _provider(ec2, ami_id)
    instance_id = await provider.provision(_request(_offer()))

    final = await provider.terminate(instance_id, now=0.0)
    again = await provider.terminate(instance_id, now=0.0)

    assert final.state is InstanceState.TERMINATED
    assert final.billable_seconds >= 0
    assert again == final
    assert _instances(ec2)[0]["State"]["Name"] == "terminated"


async def test_terminate_after_restart_reads_terminated_instance(ec2, ami_id):
    instance_id = await _provider(ec2, ami_id).provision(_request(_offer()))
    await _provider(ec2, ami_id).terminate(instance_id, now=0.0)

    final = await _provider(ec2, ami_id).terminate(instance_id, now=0.0)

    assert final.state is InstanceState.TERMINATED


async def test_terminate_unknown_instance_raises_not_found(ec2):
    with pytest.raises(InstanceNotFound, match="InvalidInstanceID.NotFound"):
        await _provider(ec2).terminate("i-0123456789abcdef0", now=0.0)


async def test_terminate_while_shutting_down_raises_transient():
    client, stubber = _stubbed_client()
    instance_id = "i-0abc"
    stubber.add_response("describe_instances", _describe_answer(instance_id, "running"))
    stubber.add_response(
        "terminate_instances",
        {
            "TerminatingInstances": [
                {
                    "InstanceId": instance_id,
                    "CurrentState": {"Code": 32, "Name": "shutting-down"},
                    "PreviousState": {"Code": 16, "Name": "running"},
                }
            ]
        },
    )
    stubber.add_response("describe_instances", _describe_answer(instance_id, "shutting-down"))

    with (
        stubber,
        pytest.raises(TransientProviderError, match="EC2 instance i-0abc is shutting-down"),
    ):
        await _provider(client).terminate(instance_id, now=0.0)


@pytest.mark.parametrize(
    ("code", "http_status", "error_type"),
    [
        ("InsufficientInstanceCapacity", 500, OutOfCapacity),
        ("InsufficientCapacity", 500, OutOfCapacity),
        ("SpotMaxPriceTooLow", 400, OutOfCapacity),
        ("VcpuLimitExceeded", 400, OutOfCapacity),
        ("RequestLimitExceeded", 503, TransientProviderError),
        ("InternalError", 500, TransientProviderError),
        ("UnauthorizedOperation", 403, PermanentProviderError),
        ("InvalidAMIID.NotFound", 400, PermanentProviderError),
    ],
)
async def test_provision_error_codes_map_to_provider_errors(code, http_status, error_type):
    client, stubber = _stubbed_client()
    stubber.add_response("describe_instances", {"Reservations": []})
    stubber.add_client_error(
        "run_instances",
        service_error_code=code,
        service_message="stubbed",
        http_status_code=http_status,
    )

    with stubber, pytest.raises(error_type, match=f"EC2 run_instances failed with {code}: stubbed"):
        await _provider(client).provision(_request(_offer()))


async def test_list_managed_instances_returns_live_tagged_instances(ec2, ami_id):
    provider = _provider(ec2, ami_id)
    first = await provider.provision(_request(_offer(), token="job-9-1"))
    second = await provider.provision(_request(_offer(), token="job-9-2"))
    gone = await provider.provision(_request(_offer(), token="job-9-3"))
    await provider.terminate(gone, now=0.0)
    ec2.run_instances(ImageId=ami_id, InstanceType="t3.micro", MinCount=1, MaxCount=1)

    managed = await provider.list_managed_instances()

    assert sorted(managed, key=lambda instance: instance.client_token) == [
        ManagedInstance(instance_id=first, job_id="job-9", client_token="job-9-1"),
        ManagedInstance(instance_id=second, job_id="job-9", client_token="job-9-2"),
    ]


def _ended_instance(
    reason_code: str, transition: str = "User initiated (2026-01-02 03:06:05 GMT)"
) -> dict:
    return {
        "InstanceId": "i-0abc",
        "State": {"Code": 48, "Name": "terminated"},
        "LaunchTime": LAUNCHED_AT,
        "StateTransitionReason": transition,
        "StateReason": {"Code": reason_code, "Message": f"{reason_code}: stubbed"},
    }


def test_instance_status_self_shutdown_exit_zero_succeeded():
    status = instance_status(
        _ended_instance("Client.InstanceInitiatedShutdown"),
        now=0.0,
        console_output="boot\ncac-exit-code=0\nreboot: Power down\n",
    )

    assert status == InstanceStatus(
        "i-0abc", InstanceState.SUCCEEDED, billable_seconds=120, exit_code=0
    )


def test_instance_status_self_shutdown_nonzero_exit_failed():
    status = instance_status(
        _ended_instance("Client.InstanceInitiatedShutdown"),
        now=0.0,
        console_output="cac-exit-code=3\n",
    )

    assert status.state is InstanceState.FAILED
    assert status.exit_code == 3
    assert status.message == "the command exited with code 3"


def test_instance_status_self_shutdown_without_marker_failed():
    status = instance_status(
        _ended_instance("Client.InstanceInitiatedShutdown"), now=0.0, console_output=""
    )

    assert status.state is InstanceState.FAILED
    assert status.exit_code is None
    assert status.message == "the instance powered off, but its console output has no exit code"


def test_instance_status_spot_interruption_preempted():
    status = instance_status(
        _ended_instance("Server.SpotInstanceTermination"), now=0.0, console_output=None
    )

    assert status.state is InstanceState.PREEMPTED
    assert status.billable_seconds == 120


def test_instance_status_user_shutdown_terminated():
    status = instance_status(
        _ended_instance("Client.UserInitiatedShutdown"), now=0.0, console_output=None
    )

    assert status == InstanceStatus(
        "i-0abc", InstanceState.TERMINATED, billable_seconds=120, message="terminated"
    )


def test_instance_status_without_transition_time_bills_until_now():
    instance = _ended_instance("Client.UserInitiatedShutdown", transition="")

    status = instance_status(instance, now=LAUNCHED_AT.timestamp() + 30, console_output=None)

    assert status.billable_seconds == 30


def test_instance_status_pending_bills_nothing():
    instance = {**_ended_instance(""), "State": {"Code": 0, "Name": "pending"}}

    status = instance_status(instance, now=LAUNCHED_AT.timestamp() + 30, console_output=None)

    assert status == InstanceStatus("i-0abc", InstanceState.PENDING, billable_seconds=0)


def test_user_data_script_lines():
    script = job_user_data(
        job_id="job-9",
        image="repo/image:1",
        command=["sh", "-c", "echo 'a b'"],
        env={"GREETING": "hi there"},
    )

    assert script.splitlines() == [
        "#!/bin/bash",
        "# compute-as-credit job job-9: run the job's container, report",
        "# its exit code on the console, then power off (which terminates the instance).",
        "docker run --rm --gpus all -e 'GREETING=hi there' -e CAC_JOB_ID=job-9 repo/image:1"
        " sh -c 'echo '\"'\"'a b'\"'\"''",
        "code=$?",
        'echo "cac-exit-code=$code" | tee /dev/console',
        "shutdown -h now",
    ]


def test_user_data_invalid_env_name_raises_permanent():
    with pytest.raises(
        PermanentProviderError, match="invalid environment variable name 'BAD-NAME'"
    ):
        job_user_data(job_id="job-9", image="busybox", command=["true"], env={"BAD-NAME": "x"})


def test_ec2_client_token_hashes_long_tokens():
    long_token = "j" * 65

    assert ec2_client_token("job-9-1") == "job-9-1"
    assert ec2_client_token(long_token).startswith("cac-")
    assert len(ec2_client_token(long_token)) == 64
    assert ec2_client_token(long_token) == ec2_client_token(long_token)


def _describe_answer(instance_id: str, state: str) -> dict:
    codes = {"running": 16, "shutting-down": 32, "terminated": 48}
    return {
        "Reservations": [
            {
                "Instances": [
                    {
                        "InstanceId": instance_id,
                        "State": {"Code": codes[state], "Name": state},
                        "LaunchTime": LAUNCHED_AT,
                        "StateTransitionReason": "",
                    }
                ]
            }
        ]
    }


async def test_find_instance_by_client_token(ec2, ami_id):
    provider = _provider(ec2, ami_id)
    instance_id = await provider.provision(_request(_offer(), token="job-9-7"))

    assert await provider.find_instance("job-9-7") == instance_id
    assert await provider.find_instance("job-9-8") is None

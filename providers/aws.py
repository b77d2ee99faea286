"""`aws`: GPU instances on Amazon EC2 through boto3, each running one job.

* Quotes: the instance type for the GPU request comes from `providers.aws_catalog`, its
  on-demand price from the shipped price table, and its spot price from
  `DescribeSpotPriceHistory` (the current price in the cheapest Availability Zone). Prices are
  converted to micro-credits at `credits_per_usd`, rounded up. EC2 bills Linux instances per
  second with a one-minute minimum, which every offer states.
* Launch: `RunInstances` with `ClientToken` derived from the client token, so EC2 itself
  returns the same instance for a repeated call, and tags `cac:job-id`, `cac:client-token` and
  `cac:managed=true`. Before launching, the adapter looks the instance up by its
  `cac:client-token` tag and adopts it. Spot instances are one-time requests through
  `InstanceMarketOptions`. The job runs from user data; see `providers.aws_user_data`.
* Status: `DescribeInstances`. pending is PENDING and running is RUNNING. An instance that
  shut itself down finished its command, and its exit code is read from its console output.
  A spot interruption is PREEMPTED, and a user-initiated shutdown is TERMINATED. Billable
  seconds run from `LaunchTime` until now, or until the time in `StateTransitionReason`.
* Terminate: `TerminateInstances`, confirmed when `DescribeInstances` shows `terminated`.

Credentials come from boto3's standard chain (environment, shared files, instance role).
boto3 calls are blocking, so each runs in a thread with `asyncio.to_thread`.
"""

import asyncio
import hashlib
import logging
import re
import time
from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError, ParamValidationError

from providers.aws_catalog import instance_type_for, instance_type_named, on_demand_usd_per_hour
from providers.aws_user_data import exit_code_from_console, job_user_data
from providers.base import (
    InstanceNotFound,
    InstanceState,
    InstanceStatus,
    LogsNotAvailable,
    ManagedInstance,
    Offer,
    OutOfCapacity,
    PermanentProviderError,
    ProvisionRequest,
    QuoteRequest,
    TransientProviderError,
)
from providers.usd import usd_to_micros

logger = logging.getLogger(__name__)

TAG_JOB_ID = "cac:job-id"
TAG_CLIENT_TOKEN = "cac:client-token"
TAG_MANAGED = "cac:managed"

MINIMUM_BILLED_SECONDS = 60
"""EC2's minimum charge for a Linux instance, per AWS's per-second billing."""

ON_DEMAND_RELIABILITY = 0.9
SPOT_RELIABILITY = 0.7
"""Estimated chances that a launch succeeds; estimates, not measured rates."""

MAX_EC2_CLIENT_TOKEN_LENGTH = 64
MAX_TAG_VALUE_LENGTH = 256

CAPACITY_ERROR_CODES = frozenset(
    {
        "InsufficientInstanceCapacity",
        "InsufficientCapacity",
        "InsufficientHostCapacity",
        "InsufficientReservedInstanceCapacity",
        "SpotMaxPriceTooLow",
        "MaxSpotInstanceCountExceeded",
        # Account quotas and instance types missing from a zone: another offer may still work.
        "InstanceLimitExceeded",
        "VcpuLimitExceeded",
        "Unsupported",
    }
)
"""EC2 error codes that mean this offer cannot be launched now: OutOfCapacity."""

TRANSIENT_ERROR_CODES = frozenset(
    {
        "RequestLimitExceeded",
        "Throttling",
        "ThrottlingException",
        "RequestThrottled",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "Unavailable",
    }
)
"""EC2 error codes of throttling and server faults: TransientProviderError, as is any 5xx."""

NOT_FOUND_ERROR_CODES = frozenset({"InvalidInstanceID.NotFound"})
"""EC2 error codes for an instance id that EC2 does not list, which it also returns for a few
seconds after a launch: InstanceNotFound."""

SPOT_INTERRUPTION_REASONS = frozenset(
    {"Server.SpotInstanceTermination", "Server.SpotInstanceShutdown"}
)
SELF_SHUTDOWN_REASON = "Client.InstanceInitiatedShutdown"
USER_SHUTDOWN_REASON = "Client.UserInitiatedShutdown"

_ENDED_STATES = frozenset({"shutting-down", "terminated", "stopping", "stopped"})
_TRANSITION_TIME = re.compile(r"\((\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}) (?:GMT|UTC)\)")


class AwsProvider:
    """Launches one EC2 instance per job attempt and reads its status and usage."""

    def __init__(
        self,
        name: str = "aws",
        *,
        region: str,
        ami_id: str,
        credits_per_usd: Decimal,
        endpoint_url: str | None = None,
        client: Any = None,
        start_seconds: int = 180,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """Create the provider.

        Args:
            name: Name of the provider in the registry.
            region: AWS region to launch in, such as "us-east-1".
            ami_id: AMI of the instances; it needs Docker and the NVIDIA container toolkit.
            credits_per_usd: Credits charged per USD of AWS's price.
            endpoint_url: EC2 endpoint; None uses AWS's. Ignored when `client` is given.
            client: A boto3 EC2 client to use instead of building one.
            start_seconds: Expected seconds from launch until the command runs (boot and
                image pull); an estimate stated on every offer.
            clock: Wall clock in seconds since the epoch, for billable seconds.
        """
        self.name = name
        self.region = region
        self.ami_id = ami_id
        self.credits_per_usd = credits_per_usd
        self.start_seconds = start_seconds
        self.clock = clock
        if client is None:
            # Standard retry mode retries throttling and 5xx responses with backoff before an
            # error reaches the classification below.
            client = boto3.client(
                "ec2",
                region_name=region,
                endpoint_url=endpoint_url,
                config=Config(retries={"mode": "standard", "max_attempts": 5}),
            )
        self.client = client
        self._final: dict[str, InstanceStatus] = {}
        self._warned_missing_prices = False

    async def quote(self, request: QuoteRequest) -> list[Offer]:
        """Return an on-demand offer, and a spot offer when allowed, for the fitting instance.

        Raises:
            TransientProviderError, PermanentProviderError: The spot price query failed.
        """
        if request.gpu_type is None or request.gpu_count < 1:
            return []
        instance = instance_type_for(request.gpu_type, request.gpu_count)
        if instance is None:
            return []

        offers = []
        price = on_demand_usd_per_hour(self.region, instance.name)
        if price is not None:
            offers.append(
                self._offer(
                    instance.name, instance.gpu_type, instance.gpu_count, price, self.region, False
                )
            )
        elif not self._warned_missing_prices:
            self._warned_missing_prices = True
            logger.warning(
                "The AWS price table has no on-demand prices for region %s; quoting spot only",
                self.region,
            )

        if request.spot_ok:
            spot = await self._cheapest_spot_price(instance.name)
            if spot is not None:
                zone, spot_price = spot
                offers.append(
                    self._offer(
                        instance.name, instance.gpu_type, instance.gpu_count, spot_price, zone, True
                    )
                )
        return offers

    async def provision(self, request: ProvisionRequest) -> str:
        """Launch the instance for the request's client token, or adopt the one launched.

        Raises:
            PermanentProviderError: The offer is not this provider's, or EC2 rejected the launch.
            OutOfCapacity: EC2 has no capacity or quota for the instance type now.
            TransientProviderError: EC2 throttled or failed; launching again is safe.
        """
        offer = request.offer
        if offer.provider != self.name:
            raise PermanentProviderError(
                f"offer is for provider {offer.provider!r}, not {self.name!r}"
            )
        if instance_type_named(offer.instance_type) is None:
            raise PermanentProviderError(
                f"provider {self.name} does not offer instance type {offer.instance_type!r}"
            )
        if not request.command:
            raise PermanentProviderError(f"command of job {request.job_id} is empty")

        existing = await self._find_by_client_token(request.client_token)
        if existing is not None:
            logger.info("Adopted EC2 instance %s of job %s", existing, request.job_id)
            return existing

        arguments: dict[str, Any] = {
            "ImageId": self.ami_id,
            "InstanceType": offer.instance_type,
            "MinCount": 1,
            "MaxCount": 1,
            "ClientToken": ec2_client_token(request.client_token),
            "UserData": job_user_data(
                job_id=request.job_id, image=request.image, command=request.command, env=request.env
            ),
            "InstanceInitiatedShutdownBehavior": "terminate",
            "TagSpecifications": [
                {
                    "ResourceType": "instance",
                    "Tags": [
                        {"Key": "Name", "Value": _tag_value(f"cac-{request.job_id}")},
                        {"Key": TAG_JOB_ID, "Value": _tag_value(request.job_id)},
                        {"Key": TAG_CLIENT_TOKEN, "Value": _tag_value(request.client_token)},
                        {"Key": TAG_MANAGED, "Value": "true"},
                    ],
                }
            ],
        }
        if offer.region != self.region:
            arguments["Placement"] = {"AvailabilityZone": offer.region}
        if offer.spot:
            # No MaxPrice: EC2 then caps the spot price at the on-demand price.
            # NOTE: the job is billed at the spot price quoted, so a rise of the spot price after
            # launch costs the platform, not the tenant.
            arguments["InstanceMarketOptions"] = {
                "MarketType": "spot",
                "SpotOptions": {
                    "SpotInstanceType": "one-time",
                    "InstanceInterruptionBehavior": "terminate",
                },
            }

        response = await self._call("run_instances", **arguments)
        instance_id = response["Instances"][0]["InstanceId"]
        logger.info(
            "Launched EC2 %s instance %s (%s in %s) of job %s",
            "spot" if offer.spot else "on-demand",
            instance_id,
            offer.instance_type,
            offer.region,
            request.job_id,
        )
        return instance_id

    async def status(self, instance_id: str, now: float) -> InstanceStatus:
        """Return the instance's state and billable seconds; `now` is ignored.

        Raises:
            PermanentProviderError: EC2 does not know the instance.
            TransientProviderError: EC2 throttled or failed.
        """
        if instance_id in self._final:
            return self._final[instance_id]
        instance = await self._describe(instance_id)
        return await self._status_of(instance)

    async def terminate(self, instance_id: str, now: float) -> InstanceStatus:
        """Terminate the instance and return its final status once EC2 shows it terminated.

        Raises:
            TransientProviderError: The instance is still shutting down, or EC2 throttled or
                failed; call again.
            PermanentProviderError: EC2 does not know the instance.
        """
        if instance_id in self._final:
            return self._final[instance_id]

        instance = await self._describe(instance_id)
        # An instance that ended by itself (finished, or interrupted) keeps its own outcome.
        if instance["State"]["Name"] != "terminated":
            logger.info("Terminating EC2 instance %s", instance_id)
            await self._call("terminate_instances", InstanceIds=[instance_id])
            instance = await self._describe(instance_id)

        state = instance["State"]["Name"]
        if state != "terminated":
            raise TransientProviderError(
                f"EC2 instance {instance_id} is {state}; call terminate again"
            )

        final = await self._status_of(instance)
        if instance.get("InstanceLifecycle") == "spot":
            final.price_per_hour_micros = await self._spot_price_micros(instance)
        self._final[instance_id] = final
        logger.info(
            "EC2 instance %s is terminated: %s after %d billable seconds",
            instance_id,
            final.state,
            final.billable_seconds,
        )
        return final

    async def find_instance(self, client_token: str) -> str | None:
        """Return the id of the instance tagged with `client_token`, or None.

        Raises:
            TransientProviderError, PermanentProviderError: The instances could not be listed.
        """
        return await self._find_by_client_token(client_token)

    async def logs(self, instance_id: str, max_bytes: int) -> str:
        """Return the tail of the instance's console output, which carries the job's output.

        NOTE: EC2 publishes console output with a delay of minutes, and keeps only its last
        64 KB, so a running job's newest lines may be missing.

        Raises:
            InstanceNotFound: EC2 does not list the instance.
            LogsNotAvailable: EC2 has no console output for the instance yet.
        """
        response = await self._call("get_console_output", InstanceId=instance_id, Latest=True)
        output = response.get("Output")
        if not output:
            raise LogsNotAvailable(f"EC2 has no console output for instance {instance_id} yet")
        return output.encode()[-max_bytes:].decode("utf-8", errors="replace")

    async def list_managed_instances(self) -> list[ManagedInstance]:
        """Return the instances tagged `cac:managed=true` that are not terminated.

        Raises:
            TransientProviderError, PermanentProviderError: The instances could not be listed.
        """
        filters = [
            {"Name": f"tag:{TAG_MANAGED}", "Values": ["true"]},
            {
                "Name": "instance-state-name",
                "Values": ["pending", "running", "shutting-down", "stopping", "stopped"],
            },
        ]
        instances = await self._describe_all(filters)
        managed = []
        for instance in instances:
            tags = _tags(instance)
            managed.append(
                ManagedInstance(
                    instance_id=instance["InstanceId"],
                    job_id=tags.get(TAG_JOB_ID, ""),
                    client_token=tags.get(TAG_CLIENT_TOKEN, ""),
                )
            )
        return managed

    def _offer(
        self,
        instance_type: str,
        gpu_type: str,
        gpu_count: int,
        usd_per_hour: Decimal,
        region: str,
        spot: bool,
    ) -> Offer:
        return Offer(
            provider=self.name,
            instance_type=instance_type,
            region=region,
            gpu_type=gpu_type,
            gpu_count=gpu_count,
            spot=spot,
            price_per_hour_micros=usd_to_micros(usd_per_hour, self.credits_per_usd),
            start_seconds=self.start_seconds,
            reliability=SPOT_RELIABILITY if spot else ON_DEMAND_RELIABILITY,
            minimum_billed_seconds=MINIMUM_BILLED_SECONDS,
        )

    async def _spot_price_micros(self, instance: dict[str, Any]) -> int | None:
        # NOTE: EC2 bills a spot instance at the price in effect in each period of its run;
        # this reads the price at teardown. The exact charge is in AWS's Cost and Usage Report,
        # which this adapter does not read.
        zone = (instance.get("Placement") or {}).get("AvailabilityZone")
        response = await self._call(
            "describe_spot_price_history",
            InstanceTypes=[instance["InstanceType"]],
            ProductDescriptions=["Linux/UNIX"],
            StartTime=datetime.now(timezone.utc),
        )
        prices = [
            (entry["Timestamp"], Decimal(entry["SpotPrice"]))
            for entry in response.get("SpotPriceHistory", [])
            if entry["AvailabilityZone"] == zone
        ]
        if not prices:
            return None
        return usd_to_micros(max(prices)[1], self.credits_per_usd)

    async def _cheapest_spot_price(self, instance_type: str) -> tuple[str, Decimal] | None:
        # With StartTime now, EC2 returns the price in effect now in each zone.
        response = await self._call(
            "describe_spot_price_history",
            InstanceTypes=[instance_type],
            ProductDescriptions=["Linux/UNIX"],
            StartTime=datetime.now(timezone.utc),
        )
        latest: dict[str, tuple[datetime, Decimal]] = {}
        for entry in response.get("SpotPriceHistory", []):
            zone = entry["AvailabilityZone"]
            seen = latest.get(zone)
            if seen is None or entry["Timestamp"] > seen[0]:
                latest[zone] = (entry["Timestamp"], Decimal(entry["SpotPrice"]))
        if not latest:
            return None
        zone = min(latest, key=lambda name: (latest[name][1], name))
        return zone, latest[zone][1]

    async def _find_by_client_token(self, client_token: str) -> str | None:
        instances = await self._describe_all(
            [{"Name": f"tag:{TAG_CLIENT_TOKEN}", "Values": [_tag_value(client_token)]}]
        )
        live = [instance for instance in instances if instance["State"]["Name"] != "terminated"]
        chosen = live or instances
        if not chosen:
            return None
        if len(chosen) > 1:
            logger.warning(
                "EC2 has %d instances with client token %s: %s; adopting the first",
                len(chosen),
                client_token,
                ", ".join(instance["InstanceId"] for instance in chosen),
            )
        return chosen[0]["InstanceId"]

    async def _describe(self, instance_id: str) -> dict[str, Any]:
        response = await self._call("describe_instances", InstanceIds=[instance_id])
        for reservation in response.get("Reservations", []):
            for instance in reservation.get("Instances", []):
                if instance["InstanceId"] == instance_id:
                    return instance
        raise InstanceNotFound(f"EC2 instance {instance_id} not found in {self.region}")

    async def _describe_all(self, filters: list[dict[str, Any]]) -> list[dict[str, Any]]:
        instances = []
        token = None
        while True:
            arguments: dict[str, Any] = {"Filters": filters}
            if token:
                arguments["NextToken"] = token
            response = await self._call("describe_instances", **arguments)
            for reservation in response.get("Reservations", []):
                instances.extend(reservation.get("Instances", []))
            token = response.get("NextToken")
            if not token:
                return instances

    async def _status_of(self, instance: dict[str, Any]) -> InstanceStatus:
        console_output = None
        reason = (instance.get("StateReason") or {}).get("Code", "")
        if instance["State"]["Name"] in _ENDED_STATES and reason == SELF_SHUTDOWN_REASON:
            response = await self._call("get_console_output", InstanceId=instance["InstanceId"])
            console_output = response.get("Output")
        return instance_status(instance, now=self.clock(), console_output=console_output)

    async def _call(self, operation: str, **arguments: Any) -> dict[str, Any]:
        method = getattr(self.client, operation)
        try:
            return await asyncio.to_thread(method, **arguments)
        except ClientError as error:
            raise classify_client_error(operation, error) from error
        except (NoCredentialsError, ParamValidationError) as error:
            raise PermanentProviderError(f"EC2 {operation} failed: {error}") from error
        except BotoCoreError as error:
            # Connection failures and timeouts, after botocore's own retries.
            raise TransientProviderError(f"EC2 {operation} failed: {error}") from error


def classify_client_error(operation: str, error: ClientError) -> Exception:
    """Return the project's error type for an EC2 error response (see the code sets above)."""
    details = error.response.get("Error", {})
    code = details.get("Code", "")
    message = f"EC2 {operation} failed with {code}: {details.get('Message', '')}"
    status = error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)

    if code in CAPACITY_ERROR_CODES:
        return OutOfCapacity(message)
    if code in NOT_FOUND_ERROR_CODES:
        return InstanceNotFound(message)
    if code in TRANSIENT_ERROR_CODES or status >= 500:
        return TransientProviderError(message)
    return PermanentProviderError(message)


def instance_status(
    instance: dict[str, Any], *, now: float, console_output: str | None
) -> InstanceStatus:
    """Map a `DescribeInstances` instance to its status (the rules in the module docstring).

    Args:
        instance: One instance from a `DescribeInstances` response.
        now: Wall clock in seconds since the epoch.
        console_output: The instance's console output, read when it shut itself down.
    """
    instance_id = instance["InstanceId"]
    state = instance["State"]["Name"]
    launched_at = instance["LaunchTime"].timestamp()

    if state == "pending":
        return InstanceStatus(instance_id, InstanceState.PENDING, billable_seconds=0)
    if state == "running":
        return InstanceStatus(
            instance_id, InstanceState.RUNNING, billable_seconds=_seconds_between(launched_at, now)
        )

    ended_at = _transition_time(instance.get("StateTransitionReason", "")) or now
    billable = _seconds_between(launched_at, ended_at)
    reason = instance.get("StateReason") or {}
    code = reason.get("Code", "")

    if code in SPOT_INTERRUPTION_REASONS:
        return InstanceStatus(
            instance_id,
            InstanceState.PREEMPTED,
            billable_seconds=billable,
            message=reason.get("Message", code),
        )
    if code == SELF_SHUTDOWN_REASON:
        exit_code = exit_code_from_console(console_output)
        if exit_code == 0:
            return InstanceStatus(
                instance_id, InstanceState.SUCCEEDED, billable_seconds=billable, exit_code=0
            )
        if exit_code is None:
            # NOTE: EC2 may publish console output minutes after it was written, so a
            # finished job can read FAILED here although its command exited with 0.
            return InstanceStatus(
                instance_id,
                InstanceState.FAILED,
                billable_seconds=billable,
                message="the instance powered off, but its console output has no exit code",
            )
        return InstanceStatus(
            instance_id,
            InstanceState.FAILED,
            billable_seconds=billable,
            exit_code=exit_code,
            message=f"the command exited with code {exit_code}",
        )
    if code == USER_SHUTDOWN_REASON:
        return InstanceStatus(
            instance_id, InstanceState.TERMINATED, billable_seconds=billable, message=state
        )
    return InstanceStatus(
        instance_id,
        InstanceState.FAILED,
        billable_seconds=billable,
        message=f"the instance is {state}: {reason.get('Message') or code or 'no reason given'}",
    )


def ec2_client_token(client_token: str) -> str:
    """Return the EC2 `ClientToken` for a client token: itself if EC2 accepts it, else a hash.

    EC2 accepts up to 64 ASCII characters.
    """
    if len(client_token) <= MAX_EC2_CLIENT_TOKEN_LENGTH and client_token.isascii():
        return client_token
    return "cac-" + hashlib.sha256(client_token.encode()).hexdigest()[:60]


def _tag_value(value: str) -> str:
    # EC2 tag values are at most 256 characters.
    return value[:MAX_TAG_VALUE_LENGTH]


def _tags(instance: dict[str, Any]) -> dict[str, str]:
    return {tag["Key"]: tag["Value"] for tag in instance.get("Tags", [])}


def _transition_time(reason: str) -> float | None:
    # StateTransitionReason reads like "User initiated (2024-01-02 03:04:05 GMT)".
    match = _TRANSITION_TIME.search(reason)
    if match is None:
        return None
    return datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S").replace(tzinfo=timezone.utc).timestamp()


def _seconds_between(start: float, end: float) -> int:
    # Round to milliseconds first, so float noise such as 90.0000001 does not bill a second.
    milliseconds = round((end - start) * 1000)
    return max(0, -(-milliseconds // 1000))

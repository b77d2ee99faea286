"""`fake`: a deterministic simulated cloud for tests and demos.

Nothing runs. An instance's life is computed from the caller's clock: it is PENDING for
`start_seconds` after `provision`'s `request.now`, RUNNING for `run_seconds`, then SUCCEEDED
with exit code 0, unless a fault from `FakeFaults` ends it earlier. The same calls with the
same `now` values therefore always return the same results, which a workflow that replays on
its own clock relies on.

Billing runs from launch, PENDING time included, until the instance ends or is terminated,
rounded up to whole seconds. `billable_seconds` does not apply the offer's
`minimum_billed_seconds`; the caller applies it when it prices the usage.
"""

import asyncio
import dataclasses
import hashlib
import json
import logging
import os
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import MappingProxyType

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

logger = logging.getLogger(__name__)

CRASH_MESSAGE = "instance crashed"
PREEMPT_MESSAGE = "spot instance preempted"


@dataclass
class FakeFaults:
    """Faults that a `FakeProvider` simulates; tests may change them on a live provider.

    `crash_after_seconds` and `preempt_after_seconds` are read when an instance launches,
    so a change affects later launches only and an instance's fate never changes after
    launch. The other fields apply to each call as it is made.
    """

    no_capacity: bool = False
    """`provision` raises OutOfCapacity."""

    provision_error: bool = False
    """`provision` raises PermanentProviderError."""

    crash_after_seconds: int | None = None
    """An instance goes FAILED this many seconds after it starts running; None for never."""

    preempt_after_seconds: int | None = None
    """A spot instance goes PREEMPTED this many seconds after it starts running; None for never."""

    quote_error: bool = False
    """`quote` raises TransientProviderError."""

    quote_delay_seconds: float = 0.0
    """Real seconds that `quote` sleeps before it returns, to test timeouts."""

    overcharge_percent: int = 0
    """Percent above the offer's price that the provider charges for an instance launched
    now, as a real provider's bill drifts from its catalog. Negative for a discount."""

    status_absent: bool = False
    """An instance launched now is never listed: `status` and `terminate` raise
    InstanceNotFound for it, as for a launch that the provider lost."""


@dataclass
class FakeInstance:
    """One simulated instance, with its whole timeline fixed at launch."""

    instance_id: str
    client_token: str
    job_id: str
    offer: Offer
    image: str
    command: list[str]

    launched_at: float
    """Caller's `now` at provision."""

    running_at: float
    """Time at which the instance goes from PENDING to RUNNING."""

    ends_at: float
    """Time at which the instance stops by itself, in `end_state`."""

    end_state: InstanceState
    """SUCCEEDED, or FAILED or PREEMPTED when a fault fires before the run ends."""

    exit_code: int | None
    """Exit code reported in `end_state`; None when the instance crashed or was preempted."""

    end_message: str
    """Message reported in `end_state`; empty for SUCCEEDED."""

    terminated_at: float | None = None
    """Caller's `now` at the first terminate; None while the instance is not torn down."""

    charged_price_per_hour_micros: int | None = None
    """Price per hour that status reports charging, fixed at launch; None, for no report,
    unless the `overcharge_percent` fault was set."""

    absent: bool = False
    """Whether the provider never lists the instance (the `status_absent` fault)."""

    def status_at(self, now: float) -> InstanceStatus:
        """Return the instance's status as of `now`."""
        if self.terminated_at is not None and self.terminated_at < self.ends_at:
            return InstanceStatus(
                self.instance_id,
                InstanceState.TERMINATED,
                billable_seconds=_seconds_between(self.launched_at, self.terminated_at),
                price_per_hour_micros=self.charged_price_per_hour_micros,
            )

        if now >= self.ends_at:
            return InstanceStatus(
                self.instance_id,
                self.end_state,
                billable_seconds=_seconds_between(self.launched_at, self.ends_at),
                exit_code=self.exit_code,
                message=self.end_message,
                price_per_hour_micros=self.charged_price_per_hour_micros,
            )

        state = InstanceState.RUNNING if now >= self.running_at else InstanceState.PENDING
        return InstanceStatus(
            self.instance_id,
            state,
            billable_seconds=_seconds_between(self.launched_at, now),
            price_per_hour_micros=self.charged_price_per_hour_micros,
        )


class FakeProvider:
    """A simulated cloud that offers the configured GPU types in the configured regions."""

    def __init__(
        self,
        name: str = "fake",
        *,
        price_per_hour_micros: int,
        gpu_types: Sequence[str],
        start_seconds: int,
        run_seconds: int,
        regions: Sequence[str] = ("sim-1",),
        faults: FakeFaults | None = None,
        spot_price_per_hour_micros: int | None = None,
        minimum_billed_seconds: int = 0,
        state_file: Path | None = None,
    ) -> None:
        """Create the provider, loading earlier instances from `state_file` if it exists.

        Args:
            name: Name of the provider in the registry.
            price_per_hour_micros: On-demand price per GPU-hour in micro-credits.
            gpu_types: GPU types offered, such as "A100"; requests match them ignoring case.
            start_seconds: Seconds from launch until an instance runs.
            run_seconds: Seconds that the command runs before it succeeds.
            regions: Regions offered; each gets its own offers.
            faults: Faults to simulate; none by default.
            spot_price_per_hour_micros: Spot price per GPU-hour; None offers no spot instances.
            minimum_billed_seconds: Minimum billed seconds stated on every offer.
            state_file: JSON file that keeps the instances across restarts; None keeps them
                in memory only.
        """
        self.name = name
        self.price_per_hour_micros = price_per_hour_micros
        self.gpu_types = list(gpu_types)
        self.start_seconds = start_seconds
        self.run_seconds = run_seconds
        self.regions = list(regions)
        self.faults = faults if faults is not None else FakeFaults()
        self.spot_price_per_hour_micros = spot_price_per_hour_micros
        self.minimum_billed_seconds = minimum_billed_seconds
        self.state_file = state_file

        self._instances: dict[str, FakeInstance] = {}
        self._launch_count = 0
        if state_file is not None and state_file.exists():
            self._load(state_file)

    @property
    def instances(self) -> Mapping[str, FakeInstance]:
        """Every instance launched, terminated or not, by instance id (read-only)."""
        return MappingProxyType(self._instances)

    @property
    def launch_count(self) -> int:
        """Number of instances launched; a provision that adopts an instance does not count."""
        return self._launch_count

    def live_instances(self) -> int:
        """Return the number of instances that were launched and not terminated.

        An instance that ended by itself still counts until it is terminated, as a real
        cloud keeps billing a VM until it is torn down. An absent instance does not count.
        """
        return sum(
            1
            for instance in self._instances.values()
            if instance.terminated_at is None and not instance.absent
        )

    async def quote(self, request: QuoteRequest) -> list[Offer]:
        """Return an on-demand offer per region, and a spot offer per region when allowed.

        Raises:
            TransientProviderError: The `quote_error` fault is set.
        """
        if self.faults.quote_delay_seconds > 0:
            await asyncio.sleep(self.faults.quote_delay_seconds)
        if self.faults.quote_error:
            raise TransientProviderError(f"provider {self.name}: simulated quote failure")

        gpu_type = self._offered_gpu_type(request.gpu_type)
        if gpu_type is None or request.gpu_count < 1:
            return []

        offers = []
        for region in self.regions:
            offers.append(
                self._offer(gpu_type, request.gpu_count, region, spot=False, price=self.price_per_hour_micros)
            )
            if request.spot_ok and self.spot_price_per_hour_micros is not None:
                offers.append(
                    self._offer(
                        gpu_type,
                        request.gpu_count,
                        region,
                        spot=True,
                        price=self.spot_price_per_hour_micros,
                    )
                )
        return offers

    async def provision(self, request: ProvisionRequest) -> str:
        """Launch a simulated instance at `request.now`, or adopt the one with the same token.

        Raises:
            PermanentProviderError: The offer is not one this provider makes, or the
                `provision_error` fault is set.
            OutOfCapacity: The `no_capacity` fault is set.
        """
        instance_id = self._instance_id(request.client_token)
        if instance_id in self._instances:
            logger.info("Adopted fake instance %s of job %s", instance_id, request.job_id)
            return instance_id

        self._check_offer(request.offer)
        if self.faults.provision_error:
            raise PermanentProviderError(f"provider {self.name}: simulated provisioning error")
        if self.faults.no_capacity:
            raise OutOfCapacity(
                f"provider {self.name}: no capacity for {request.offer.instance_type}"
                f" in {request.offer.region}"
            )

        instance = self._new_instance(instance_id, request)
        self._instances[instance_id] = instance
        self._launch_count += 1
        self._save()
        logger.info(
            "Launched fake instance %s of job %s, ending in %s at %s",
            instance_id,
            request.job_id,
            instance.end_state,
            instance.ends_at,
        )
        return instance_id

    async def status(self, instance_id: str, now: float) -> InstanceStatus:
        """Return the instance's status as of `now`.

        Raises:
            PermanentProviderError: The instance id is unknown.
        """
        return self._get(instance_id).status_at(now)

    async def terminate(self, instance_id: str, now: float) -> InstanceStatus:
        """Tear the instance down at `now` and return its final status.

        Billing stops at `now`, or at the instance's own end if that came first. A
        repeated call keeps the time of the first one.

        Raises:
            PermanentProviderError: The instance id is unknown.
        """
        instance = self._get(instance_id)
        if instance.terminated_at is None:
            instance.terminated_at = max(now, instance.launched_at)
            self._save()
            logger.info("Terminated fake instance %s of job %s", instance_id, instance.job_id)
        return instance.status_at(max(now, instance.terminated_at))

    async def find_instance(self, client_token: str) -> str | None:
        """Return the id of the instance launched with `client_token`, or None."""
        instance_id = self._instance_id(client_token)
        instance = self._instances.get(instance_id)
        if instance is None or instance.absent:
            return None
        return instance_id

    async def logs(self, instance_id: str, max_bytes: int) -> str:
        """Return a simulated log of the instance's timeline; nothing runs, so it has no output.

        Raises:
            InstanceNotFound: The instance id is unknown.
        """
        instance = self._get(instance_id)
        lines = [
            f"{_iso(instance.launched_at)} fake instance {instance_id} launched for job"
            f" {instance.job_id}",
        ]
        stopped_at = instance.terminated_at
        if stopped_at is None or stopped_at > instance.running_at:
            lines.append(
                f"{_iso(instance.running_at)} running {shlex.join(instance.command)}"
                f" in {instance.image}"
            )
        if stopped_at is None or stopped_at >= instance.ends_at:
            # Simulated: the line is there from launch, with the time the run is due to end.
            end = f"{_iso(instance.ends_at)} {instance.end_state.value}"
            lines.append(f"{end}: {instance.end_message}" if instance.end_message else end)
        if stopped_at is not None:
            lines.append(f"{_iso(stopped_at)} terminated")
        text = "".join(f"{line}\n" for line in lines).encode()
        return text[-max_bytes:].decode("utf-8", errors="replace")

    async def list_managed_instances(self) -> list[ManagedInstance]:
        """Return the instances that were launched, not terminated and not absent."""
        return [
            ManagedInstance(
                instance_id=instance.instance_id,
                job_id=instance.job_id,
                client_token=instance.client_token,
            )
            for instance in self._instances.values()
            if instance.terminated_at is None and not instance.absent
        ]

    def _offered_gpu_type(self, requested: str | None) -> str | None:
        if requested is None:
            return None
        for gpu_type in self.gpu_types:
            if gpu_type.lower() == requested.lower():
                return gpu_type
        return None

    def _offer(self, gpu_type: str, gpu_count: int, region: str, *, spot: bool, price: int) -> Offer:
        return Offer(
            provider=self.name,
            instance_type=f"sim-{gpu_type.lower()}-x{gpu_count}",
            region=region,
            gpu_type=gpu_type,
            gpu_count=gpu_count,
            spot=spot,
            price_per_hour_micros=price * gpu_count,
            start_seconds=self.start_seconds,
            reliability=1.0,
            minimum_billed_seconds=self.minimum_billed_seconds,
        )

    def _check_offer(self, offer: Offer) -> None:
        if offer.provider != self.name:
            raise PermanentProviderError(f"offer is for provider {offer.provider!r}, not {self.name!r}")
        if self._offered_gpu_type(offer.gpu_type) is None:
            raise PermanentProviderError(
                f"provider {self.name} does not offer GPU type {offer.gpu_type!r};"
                f" it offers {', '.join(self.gpu_types)}"
            )
        if offer.region not in self.regions:
            raise PermanentProviderError(
                f"provider {self.name} has no region {offer.region!r};"
                f" it has {', '.join(self.regions)}"
            )

    def _instance_id(self, client_token: str) -> str:
        # Derived from the token, so the id is the same after a restart without a state file.
        return f"{self.name}-{hashlib.sha256(client_token.encode()).hexdigest()[:16]}"

    def _new_instance(self, instance_id: str, request: ProvisionRequest) -> FakeInstance:
        running_at = request.now + self.start_seconds
        run_seconds = self.run_seconds
        end_state = InstanceState.SUCCEEDED
        exit_code: int | None = 0
        end_message = ""

        # A fault ends the run only if it fires strictly before the command would finish.
        # The earliest fault wins; when a crash and a preemption fire at once, the crash does.
        fired = []
        crash_after = self.faults.crash_after_seconds
        if crash_after is not None and crash_after < self.run_seconds:
            fired.append((crash_after, 0, InstanceState.FAILED, CRASH_MESSAGE))
        preempt_after = self.faults.preempt_after_seconds
        if request.offer.spot and preempt_after is not None and preempt_after < self.run_seconds:
            fired.append((preempt_after, 1, InstanceState.PREEMPTED, PREEMPT_MESSAGE))
        if fired:
            run_seconds, _, end_state, end_message = min(fired)
            exit_code = None

        charged = None
        if self.faults.overcharge_percent:
            # Rounded up, as a provider rounds its bill.
            price = request.offer.price_per_hour_micros
            charged = max(0, -(-price * (100 + self.faults.overcharge_percent) // 100))

        return FakeInstance(
            instance_id=instance_id,
            client_token=request.client_token,
            job_id=request.job_id,
            offer=request.offer,
            image=request.image,
            command=list(request.command),
            launched_at=request.now,
            running_at=running_at,
            ends_at=running_at + run_seconds,
            end_state=end_state,
            exit_code=exit_code,
            end_message=end_message,
            charged_price_per_hour_micros=charged,
            absent=self.faults.status_absent,
        )

    def _get(self, instance_id: str) -> FakeInstance:
        instance = self._instances.get(instance_id)
        if instance is None or instance.absent:
            raise InstanceNotFound(f"fake instance {instance_id} not found on provider {self.name}")
        return instance

    def _save(self) -> None:
        # NOTE: the whole file is rewritten from this object's memory, so two processes that
        # share a state file overwrite each other's instances. Give each process its own file.
        if self.state_file is None:
            return
        data = {
            "launch_count": self._launch_count,
            "instances": [dataclasses.asdict(instance) for instance in self._instances.values()],
        }
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.state_file.with_name(f".{self.state_file.name}.{os.getpid()}.tmp")
        temporary.write_text(json.dumps(data, indent=1), encoding="utf-8")
        os.replace(temporary, self.state_file)

    def _load(self, state_file: Path) -> None:
        data = json.loads(state_file.read_text(encoding="utf-8"))
        self._launch_count = data["launch_count"]
        for record in data["instances"]:
            instance = FakeInstance(
                **{
                    **record,
                    "offer": Offer(**record["offer"]),
                    "end_state": InstanceState(record["end_state"]),
                }
            )
            self._instances[instance.instance_id] = instance


def _seconds_between(start: float, end: float) -> int:
    # Differences of epoch floats carry errors such as 10800.000000238; Temporal's clock has
    # millisecond resolution, so round to milliseconds before rounding up to whole seconds.
    milliseconds = round((end - start) * 1000)
    return max(0, -(-milliseconds // 1000))


def _iso(moment: float) -> str:
    return datetime.fromtimestamp(moment, UTC).isoformat(timespec="seconds")

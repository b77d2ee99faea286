"""The contract between the system and a compute provider.

A provider adapter implements `ProviderClient`. It turns every HTTP or SDK error it meets into
one of the three `ProviderError` subclasses below, so that callers decide on those types alone:

* `OutOfCapacity`: the provider has no instance of that kind now; try another offer.
* `TransientProviderError`: the call may succeed if repeated (timeouts, 5xx, throttling).
* `PermanentProviderError`: repeating the same call will fail again (bad request, auth).
  Its subclass `InstanceNotFound` means the provider does not list the instance. That happens
  right after a launch on a provider whose reads lag behind its writes, or once it is gone.

Every call is safe to repeat. `provision` takes a client token derived from the job id and the
attempt number, and a second call with the same token returns the instance that the first call
created instead of creating another. `terminate` on an instance that is already gone returns
its final status again.

Money is in integer micro-credits (1 credit = 1,000,000 micro-credits). A simulated
provider reads the time from `now`, seconds since the epoch on the caller's clock, so that a
workflow can drive the simulation on its own deterministic clock. Real providers ignore it.
"""

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Protocol


class ProviderError(Exception):
    """Base of the errors a provider adapter raises."""


class OutOfCapacity(ProviderError):
    """The provider has no capacity for the requested instance now."""


class TransientProviderError(ProviderError):
    """The call failed in a way that repeating it may fix."""


class PermanentProviderError(ProviderError):
    """The call failed in a way that repeating it will not fix."""


class InstanceNotFound(PermanentProviderError):
    """The provider does not list the instance, because it is not visible yet or is gone."""


class LogsNotAvailable(PermanentProviderError):
    """The provider keeps no output of the instance's command that this adapter can read."""


@dataclass
class QuoteRequest:
    """Resources a job requests, as passed to a provider for quoting."""

    gpu_type: str | None = None
    """GPU model name such as "A100"; None for a job that needs no GPU."""

    gpu_count: int = 0
    """Number of GPUs; 0 for a CPU-only job."""

    spot_ok: bool = False
    """Whether an interruptible (spot) instance is acceptable."""


@dataclass
class Offer:
    """One provider's price and expected start time for a job's resources."""

    provider: str
    """Name of the provider in the registry, such as "fake"."""

    instance_type: str
    """Provider-specific instance or GPU type that would be launched."""

    region: str
    """Provider region or zone; "local" for this machine."""

    gpu_type: str | None
    """GPU model offered, None for a CPU instance."""

    gpu_count: int
    """Number of GPUs offered."""

    spot: bool
    """Whether the instance is interruptible."""

    price_per_hour_micros: int
    """Price in micro-credits per hour of the whole instance."""

    start_seconds: int
    """Expected seconds from launch until the job runs."""

    reliability: float = 1.0
    """Estimated probability in [0, 1] that provisioning succeeds."""

    minimum_billed_seconds: int = 0
    """Seconds that are billed however short the run; 0 for pure per-second billing."""


@dataclass
class ProvisionRequest:
    """A request to launch one instance for one job attempt."""

    client_token: str
    """Idempotency token, unique per job and attempt; a repeated call adopts the instance."""

    job_id: str
    """Job that the instance belongs to; providers tag or name the instance with it."""

    offer: Offer
    """The chosen offer."""

    image: str
    """Container image to run."""

    command: list[str]
    """Command and arguments to run."""

    env: dict[str, str] = field(default_factory=dict)
    """Environment variables for the command."""

    now: float = 0.0
    """Caller's clock in seconds since the epoch; only simulated providers read it."""


class InstanceState(StrEnum):
    """Lifecycle state of a provider instance, in the system's own terms."""

    PENDING = "PENDING"
    """Launched and not yet running the command."""

    RUNNING = "RUNNING"
    """Running the command."""

    SUCCEEDED = "SUCCEEDED"
    """The command exited with code 0."""

    FAILED = "FAILED"
    """The command exited with a non-zero code, or the instance crashed."""

    PREEMPTED = "PREEMPTED"
    """The provider reclaimed a spot instance."""

    TERMINATED = "TERMINATED"
    """The instance was torn down and the provider confirmed it."""


FINAL_INSTANCE_STATES = frozenset(
    {InstanceState.SUCCEEDED, InstanceState.FAILED, InstanceState.PREEMPTED, InstanceState.TERMINATED}
)


@dataclass
class InstanceStatus:
    """Status report of a provider about one instance."""

    instance_id: str
    """Provider's id of the instance."""

    state: InstanceState
    """Current lifecycle state."""

    billable_seconds: int
    """Seconds the provider bills so far: from launch until now or until it stopped."""

    exit_code: int | None = None
    """Exit code of the command once it finished, when the provider reports one."""

    message: str = ""
    """Provider's explanation, such as a crash reason; empty when there is none."""

    price_per_hour_micros: int | None = None
    """Price per hour that the provider reports charging for the instance, in micro-credits.
    None when it reports none, and the offer's price is used instead."""


@dataclass(frozen=True)
class ManagedInstance:
    """An instance that this system launched and the provider still has."""

    instance_id: str
    """Provider's id of the instance."""

    job_id: str
    """Job that launched it, read from the instance's tags or environment; empty if unknown."""

    client_token: str
    """Client token of the provision call that launched it."""


class ProviderClient(Protocol):
    """An adapter to one compute provider. See the module docstring for the contract."""

    name: str

    async def quote(self, request: QuoteRequest) -> list[Offer]:
        """Return the offers that fit the request; an empty list when none does."""
        ...

    async def provision(self, request: ProvisionRequest) -> str:
        """Launch, or adopt by client token, an instance and return its id."""
        ...

    async def status(self, instance_id: str, now: float) -> InstanceStatus:
        """Return the instance's state and usage. Raise InstanceNotFound if it is not listed."""
        ...

    async def terminate(self, instance_id: str, now: float) -> InstanceStatus:
        """Tear the instance down and return its final status once the provider confirms it.

        The returned state is TERMINATED if the instance was stopped by this call or an earlier
        one. It is SUCCEEDED, FAILED or PREEMPTED if the instance had already stopped on its own
        before the first terminate. Its `billable_seconds` are final. Calling terminate again
        returns the same status.

        Raises:
            TransientProviderError: The instance is still starting or shutting down; call
                again until it returns.
            InstanceNotFound: The provider does not list the instance.
        """
        ...


class ListsManagedInstances(Protocol):
    """A provider adapter that can list the instances it launched, for an orphan sweep."""

    async def list_managed_instances(self) -> list[ManagedInstance]:
        """Return the instances this system launched that are not terminated yet."""
        ...


class FindsInstances(Protocol):
    """A provider adapter that can find the instance that a provision call launched."""

    async def find_instance(self, client_token: str) -> str | None:
        """Return the id of the instance launched with `client_token`, or None if there is
        none; a terminated instance may be returned."""
        ...


class ReadsLogs(Protocol):
    """A provider adapter that can read the output of an instance's command."""

    async def logs(self, instance_id: str, max_bytes: int) -> str:
        """Return the last `max_bytes` bytes of the command's output, decoded as UTF-8.

        Raises:
            InstanceNotFound: The provider does not list the instance.
            LogsNotAvailable: The provider keeps no output for this instance.
        """
        ...

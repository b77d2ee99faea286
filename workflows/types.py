"""Input, state and signal dataclasses of `JobWorkflow`.

These are part of every running job's history: add fields with defaults, never rename or
remove one, or running jobs fail to replay.
"""

from dataclasses import dataclass, field
from enum import StrEnum

from activities.types import JobConfig
from ledger.alerts import LowBalanceNotice
from ledger.money import micros_to_credits
from providers.base import Offer


class JobStatus(StrEnum):
    """Lifecycle stage of a job; SUCCEEDED, FAILED and CANCELLED are final."""

    SUBMITTED = "SUBMITTED"
    QUEUED = "QUEUED"
    PROVISIONING = "PROVISIONING"
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"
    CANCELLED = "CANCELLED"


FINAL_JOB_STATUSES = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELLED})


@dataclass
class JobInput:
    """A submitted job, as the API hands it to the workflow."""

    job_id: str
    """Job id; also the workflow id."""

    tenant_id: str
    """Tenant that pays for the job: the subject of the submitting token."""

    image: str
    """Container image to run."""

    command: list[str]
    """Command and arguments to run in the image."""

    max_budget_micros: int
    """Maximum the job may cost, in micro-credits; held in the ledger before provisioning."""

    env: dict[str, str] = field(default_factory=dict)
    """Environment variables for the command."""

    gpu_type: str | None = None
    """Requested GPU model; None for a job that needs no GPU."""

    gpu_count: int = 0
    """Requested number of GPUs."""

    spot_ok: bool = False
    """Whether an interruptible (spot) instance is acceptable."""

    submitted_at: str = ""
    """ISO 8601 time at which the API accepted the job."""

    policy: str = "balanced"
    """Selection policy: "balanced", "cheapest" or "fastest"."""

    providers: list[str] = field(default_factory=list)
    """Providers the job may run on; empty for every enabled provider."""

    max_price_per_hour_micros: int | None = None
    """Highest acceptable price per hour in micro-credits; None for no limit."""

    callback_url: str | None = None
    """URL that receives each status change as a signed POST; None for no callbacks."""

    wait_for_input: bool = False
    """Whether the job waits for the `input_ready` signal, sent once its input is uploaded,
    before it requests quotes."""

    input_timeout_seconds: int = 3600
    """Seconds the job waits for its input before it fails."""

    checkpoint: "Checkpoint | None" = None
    """State carried from the previous run when the job continued as new; None at first."""


class JobEventType(StrEnum):
    """Kind of entry in a job's timeline."""

    STATUS = "status"
    """The job's status changed."""

    WAITING_FOR_INPUT = "waiting_for_input"
    """The job waits for its input to be uploaded."""

    INPUT_READY = "input_ready"
    """The job's input was uploaded."""

    ATTEMPT = "attempt"
    """Provisioning was tried at an offer."""

    ATTEMPT_FAILED = "attempt_failed"
    """An attempt did not launch, or its instance was not ready in time."""

    INSTANCE_LAUNCHED = "instance_launched"
    """An attempt launched an instance."""

    SEGMENT_BILLED = "segment_billed"
    """An instance was torn down and its usage billed."""

    SETTLED = "settled"
    """The job's cost was captured and the rest of its hold released."""


@dataclass
class JobEvent:
    """One entry of a job's timeline."""

    sequence: int
    """1 for the first event, counting up without gaps."""

    time: str
    """ISO 8601 workflow time of the event."""

    type: JobEventType
    status: JobStatus
    """The job's status after the event."""

    message: str = ""
    """Description of the event, in a sentence."""

    provider: str | None = None
    instance_id: str | None = None
    amount_micros: int | None = None
    """Cost billed by a segment_billed event, or captured by a settled event."""

    def to_json(self) -> dict[str, object]:
        """Return the event as the API and webhooks send it, with the amount in credits."""
        amount = None
        if self.amount_micros is not None:
            amount = f"{micros_to_credits(self.amount_micros):f}"
        return {
            "sequence": self.sequence,
            "time": self.time,
            "type": self.type.value,
            "status": self.status.value,
            "message": self.message,
            "provider": self.provider,
            "instanceId": self.instance_id,
            "amount": amount,
        }


@dataclass
class Segment:
    """One stretch of billed usage on one instance."""

    attempt: int
    """Number of the attempt that launched the instance."""

    provider: str
    instance_id: str
    price_per_hour_micros: int
    """Quoted price the segment is billed at."""

    billable_seconds: int
    cost_micros: int
    """Cost at the quoted price: what the tenant pays for the segment, before the hold cap."""

    end_state: str
    """Instance state at the end of the segment, such as "SUCCEEDED" or "PREEMPTED"."""

    provider_price_per_hour_micros: int | None = None
    """Price per hour the provider reports charging; None when it reports none."""

    provider_cost_micros: int | None = None
    """Provider's charge for the segment at its reported price; None without one."""


@dataclass
class Attempt:
    """One provisioning attempt at one offer."""

    number: int
    """1 for the first attempt, counting up."""

    offer: Offer
    """Offer that was tried."""

    instance_id: str | None = None
    """Provider's instance id once launched; None if the launch failed."""

    error: str = ""
    """Reason the attempt failed; empty if it launched."""


@dataclass
class JobState:
    """A job's live state, returned by the `state` query and as the workflow result."""

    job_id: str
    tenant_id: str
    status: JobStatus = JobStatus.SUBMITTED
    failure_reason: str = ""
    """Human-readable reason for FAILED or CANCELLED; empty otherwise."""

    offers: list[Offer] = field(default_factory=list)
    """Offers that fit the job, best first by the selection policy."""

    selection_reason: str = ""
    """Reason the first offer won, or the reason no offer fits."""

    segments: list[Segment] = field(default_factory=list)
    """Billed usage of every instance the job ran on, in order; one per preemption plus one."""

    chosen_offer: Offer | None = None
    """Offer the job runs on, or last ran on."""

    attempts: list[Attempt] = field(default_factory=list)
    """Every provisioning attempt in order."""

    instance_id: str | None = None
    """Provider's id of the current instance."""

    exit_code: int | None = None
    """Exit code of the job's command once it finished, when the provider reports it."""

    held_micros: int = 0
    """Micro-credits held for the job and not yet captured or released."""

    cost_micros: int = 0
    """Cost accrued so far; after settlement, the captured amount."""

    captured_micros: int = 0
    """Micro-credits captured as revenue at settlement."""

    released_micros: int = 0
    """Micro-credits returned to the tenant at settlement."""

    provider_cost_micros: int = 0
    """Providers' charges to the platform for the closed segments. A segment whose provider
    reports no price counts at its quoted cost."""

    submitted_at: str = ""
    started_at: str = ""
    """ISO 8601 time at which the instance started running the command."""

    finished_at: str = ""
    """ISO 8601 time at which the job reached a final status."""

    events: list[JobEvent] = field(default_factory=list)
    """The job's timeline: status changes, attempts, billed segments and settlement."""


@dataclass
class InputReady:
    """Signal argument saying that the job's input is uploaded."""


@dataclass
class CancelRequest:
    """Signal argument asking a job to stop."""

    reason: str = "cancelled by the user"


@dataclass
class Checkpoint:
    """State that a job carries into a new run when it continues as new while an instance
    runs."""

    state: JobState
    config: JobConfig
    offer: Offer
    """Offer of the live instance."""

    attempt_number: int
    closed_cost_micros: int
    last_billable_seconds: int
    monitor_started_at: str
    """ISO 8601 time at which monitoring of the live instance started: its readiness clock."""

    listed_before: bool
    """Whether the provider has listed the live instance."""

    preemptions: int
    lost: list[Offer]
    """Offers whose instances were preempted or never ready; never tried again."""

    delivered_events: int
    """Events of the timeline that the webhook loop has handled."""

    pending_notices: list[LowBalanceNotice] = field(default_factory=list)
    """Low-balance notices not delivered yet; the new run sends them."""

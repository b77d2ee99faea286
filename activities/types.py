"""Inputs and outputs of the job activities.

They are recorded in workflow histories: add fields with defaults, never rename or remove one.
"""

from dataclasses import dataclass, field

from ledger.alerts import LowBalanceNotice
from ledger.provider_costs import ProviderCharge
from providers.base import InstanceState, Offer, ProvisionRequest, QuoteRequest

# ApplicationError types that activities raise for business rejections. The workflow matches on
# these strings, so they are part of the history contract too.
OUT_OF_CAPACITY = "OutOfCapacity"
PROVISIONING_FAILED = "ProvisioningFailed"
INSUFFICIENT_CREDITS = "InsufficientCredits"
LEDGER_REJECTED = "LedgerRejected"
UNKNOWN_PROVIDER = "UnknownProvider"


@dataclass
class JobConfigInput:
    """Input of `load_job_config`; empty, kept as a dataclass so fields can be added."""


@dataclass
class JobConfig:
    """Worker configuration that a job reads once, at its start, into its history."""

    providers: list[str]
    """Names of the enabled providers, in configuration order."""

    poll_interval_seconds: int
    """Seconds between two status checks of a running instance."""

    max_attempts: int = 3
    """Most provisioning attempts per placement, counting fail-overs."""

    max_preemptions: int = 3
    """Most spot preemptions a job recovers from before it fails."""

    quote_timeout_seconds: int = 10
    """Seconds one provider has to quote, per try; a slower provider is left out."""

    readiness_timeout_seconds: int = 900
    """Seconds an instance may stay PENDING before it is torn down and the next offer tried."""

    history_event_limit: int = 5000
    """History length at which a job that monitors an instance continues as new, carrying
    its state; Temporal's own suggestion to continue as new is followed too."""


@dataclass
class QuoteInput:
    """Input of `get_quotes`: one provider and what the job needs."""

    provider: str
    request: QuoteRequest


@dataclass
class QuoteOutput:
    """Offers from one provider."""

    offers: list[Offer] = field(default_factory=list)


@dataclass
class BudgetRequest:
    """Input of `hold_budget`."""

    tenant_id: str
    job_id: str
    amount_micros: int
    key: str
    """Idempotency key of the ledger transaction."""


@dataclass
class BudgetResult:
    """Output of `hold_budget`."""

    transaction_id: int
    replayed: bool
    """True when the key had already been posted and the first result was returned."""

    low_balance: LowBalanceNotice | None = None
    """A notice for the tenant when this hold took its available credits below its alert's
    threshold; None otherwise."""


@dataclass
class ProvisionInput:
    """Input of `provision_instance`."""

    request: ProvisionRequest


@dataclass
class ProvisionOutput:
    """Output of `provision_instance`."""

    instance_id: str


@dataclass
class InstanceInput:
    """Input of `check_instance` and `terminate_instance`."""

    offer: Offer
    """Offer the instance was launched from; its price meters the usage."""

    instance_id: str
    now: float
    """Workflow clock in seconds since the epoch, for simulated providers."""

    last_billable_seconds: int = 0
    """Billable seconds of the last status read; what a teardown bills when the provider no
    longer lists the instance."""


@dataclass
class InstanceReport:
    """An instance's state and what its usage costs so far at the offer's price."""

    state: InstanceState
    billable_seconds: int
    cost_micros: int
    """Cost of the billable seconds at the offer's price: what the tenant pays."""

    exit_code: int | None = None
    message: str = ""
    listed: bool = True
    """False when the provider does not list the instance. A status check then reports it
    PENDING, and a teardown reports it TERMINATED at the last billable seconds read."""

    provider_price_per_hour_micros: int | None = None
    """Price per hour that the provider reports charging; None when it reports none."""

    provider_cost_micros: int | None = None
    """Cost of the billable seconds at the provider's reported price; None without one."""


@dataclass
class SettleInput:
    """Input of `settle_budget`: capture the cost and release the rest of the job's hold."""

    tenant_id: str
    job_id: str
    held_micros: int
    cost_micros: int
    provider_charges: list[ProviderCharge] = field(default_factory=list)
    """Providers' charges for each segment, booked beside the capture."""


@dataclass
class SettleOutput:
    """Output of `settle_budget`."""

    captured_micros: int
    released_micros: int


@dataclass
class LogsInput:
    """Input of `read_logs`: one instance of a job."""

    provider: str
    instance_id: str
    max_bytes: int


@dataclass
class LogsOutput:
    """Output of `read_logs`."""

    available: bool
    text: str = ""
    """The tail of the command's output; empty when not available."""

    reason: str = ""
    """Reason the logs are not available; empty when they are."""


@dataclass
class ReleaseInput:
    """Input of `release_attempt`: a provisioning attempt that failed."""

    offer: Offer
    client_token: str
    now: float
    """Workflow clock in seconds since the epoch, for simulated providers."""


@dataclass
class ReleaseOutput:
    """Output of `release_attempt`."""

    instance_id: str | None = None
    """Instance that the attempt launched after all and that is now terminated; None if the
    provider has none, or cannot look one up."""

    report: "InstanceReport | None" = None
    """The terminated instance's final state and usage priced at the offer; None without one."""

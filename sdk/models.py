"""Typed results of the API's responses.

Each result is a frozen dataclass built from the response's JSON by `from_json`. Amounts are
`Decimal` credits parsed from the API's decimal strings, never floats, and times are aware
datetimes. `raw` keeps the JSON object as received, including any field that a newer API sends
and this version of the SDK does not know. It is left out of equality, hashing and repr,
because the typed fields show what it contains.
"""

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any, Self

JOB_STATUSES = (
    "SUBMITTED",
    "QUEUED",
    "PROVISIONING",
    "RUNNING",
    "SUCCEEDED",
    "FAILED",
    "CANCELLED",
)
"""Every job status, in lifecycle order."""

FINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
"""Job statuses after which a job never changes again."""


@dataclass(frozen=True)
class SubmittedJob:
    """Response of `POST /v1/jobs`."""

    job_id: str
    status: str
    """The job's status in the response: SUBMITTED for a new job, the current status for a
    replayed submission."""
    replayed: bool
    """True when an earlier request with the same Idempotency-Key started the job (HTTP 200),
    False when this request started it (HTTP 201)."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, replayed: bool) -> Self:
        return cls(
            job_id=data["jobId"], status=data["status"], replayed=replayed, raw=dict(data)
        )


@dataclass(frozen=True)
class Quote:
    """One provider's offer: from `GET /v1/quotes`, or the offer a job was placed on."""

    provider: str
    region: str
    instance_type: str
    gpu_type: str | None
    """GPU model such as "A100"; None for a CPU-only offer."""
    gpu_count: int
    spot: bool
    """Whether the instance is interruptible."""
    price_per_hour: Decimal
    """Credits per hour of the whole instance."""
    start_seconds: int | None
    """Expected seconds from launch until the job runs; None in a job's `quote`."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            provider=data["provider"],
            region=data["region"],
            instance_type=data["instanceType"],
            gpu_type=data.get("gpuType"),
            gpu_count=data["gpuCount"],
            spot=data["spot"],
            price_per_hour=parse_credits(data["pricePerHour"], "pricePerHour"),
            start_seconds=data.get("startSeconds"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class QuoteList:
    """Response of `GET /v1/quotes`."""

    offers: tuple[Quote, ...]
    """Offers, cheapest first."""
    failed_providers: tuple[str, ...]
    """Providers that failed or did not respond within their timeout."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            offers=tuple(Quote.from_json(offer) for offer in data["offers"]),
            failed_providers=tuple(data["failedProviders"]),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Segment:
    """One stretch of billed usage on one instance."""

    provider: str
    instance_id: str
    price_per_hour: Decimal
    """Quoted credits per hour."""
    billable_seconds: int
    cost: Decimal
    """Cost of the segment in credits."""
    end_state: str
    """Instance state at the end, such as PREEMPTED."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            provider=data["provider"],
            instance_id=data["instanceId"],
            price_per_hour=parse_credits(data["pricePerHour"], "pricePerHour"),
            billable_seconds=data["billableSeconds"],
            cost=parse_credits(data["cost"], "cost"),
            end_state=data["endState"],
            raw=dict(data),
        )


@dataclass(frozen=True)
class Job:
    """A job's state, as `GET /v1/jobs/{jobId}` returns it; live while the job runs.

    The amounts are None for a job whose workflow was terminated or failed outside the job's
    own logic, because the state they come from is lost.
    """

    job_id: str
    status: str
    """One of `JOB_STATUSES`."""
    failure_reason: str
    """Reason the job FAILED or was CANCELLED; empty otherwise."""
    provider: str | None
    """Provider of the chosen offer; None before an offer is chosen."""
    quote: Quote | None
    """The offer the job runs on, or last ran on."""
    attempts: int
    """Provisioning attempts so far."""
    selection_reason: str
    """Reason the chosen offer won, or the reason that no offer fit the job."""
    segments: tuple[Segment, ...]
    """Billed usage of each instance the job ran on."""
    exit_code: int | None
    max_budget: Decimal | None
    held: Decimal | None
    """Credits held and not yet captured or released."""
    cost: Decimal | None
    """Cost so far in credits; final once the job is."""
    captured: Decimal | None
    released: Decimal | None
    submitted_at: datetime | None
    started_at: datetime | None
    finished_at: datetime | None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @property
    def is_final(self) -> bool:
        """Whether the job is SUCCEEDED, FAILED or CANCELLED and will not change again."""
        return self.status in FINAL_STATUSES

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        quote = data.get("quote")
        return cls(
            job_id=data["jobId"],
            status=data["status"],
            failure_reason=data.get("failureReason") or "",
            provider=data.get("provider"),
            quote=Quote.from_json(quote) if quote is not None else None,
            attempts=data.get("attempts", 0),
            selection_reason=data.get("selectionReason") or "",
            segments=tuple(Segment.from_json(segment) for segment in data.get("segments", ())),
            exit_code=data.get("exitCode"),
            max_budget=parse_optional_credits(data.get("maxBudget"), "maxBudget"),
            held=parse_optional_credits(data.get("held"), "held"),
            cost=parse_optional_credits(data.get("cost"), "cost"),
            captured=parse_optional_credits(data.get("captured"), "captured"),
            released=parse_optional_credits(data.get("released"), "released"),
            submitted_at=parse_optional_time(data.get("submittedAt"), "submittedAt"),
            started_at=parse_optional_time(data.get("startedAt"), "startedAt"),
            finished_at=parse_optional_time(data.get("finishedAt"), "finishedAt"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class JobSummary:
    """One job in a `GET /v1/jobs` page."""

    job_id: str
    status: str
    provider: str | None
    gpu_type: str | None
    cost: Decimal | None
    """Cost in credits; for a job that has not finished, the cost when it was last indexed."""
    submitted_at: datetime | None
    closed_at: datetime | None
    """When the job's workflow closed; None while it runs."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            job_id=data["jobId"],
            status=data["status"],
            provider=data.get("provider"),
            gpu_type=data.get("gpuType"),
            cost=parse_optional_credits(data.get("cost"), "cost"),
            submitted_at=parse_optional_time(data.get("submittedAt"), "submittedAt"),
            closed_at=parse_optional_time(data.get("closedAt"), "closedAt"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class JobPage:
    """One page of `GET /v1/jobs`."""

    jobs: tuple[JobSummary, ...]
    next_cursor: str | None
    """Cursor of the next page; None on the last page."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            jobs=tuple(JobSummary.from_json(job) for job in data["jobs"]),
            next_cursor=data.get("nextCursor"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class JobEvent:
    """One entry of a job's timeline, from `GET /v1/jobs/{jobId}/events`."""

    sequence: int
    """1 for the first event, counting up without gaps."""
    time: datetime
    """Workflow time of the event."""
    type: str
    """Kind of event, such as "status", "attempt" or "settled"."""
    status: str
    """The job's status after the event."""
    message: str
    provider: str | None
    instance_id: str | None
    amount: Decimal | None
    """Credits billed by a segment_billed event or captured by a settled event; else None."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            sequence=data["sequence"],
            time=parse_time(data["time"], "time"),
            type=data["type"],
            status=data["status"],
            message=data.get("message") or "",
            provider=data.get("provider"),
            instance_id=data.get("instanceId"),
            amount=parse_optional_credits(data.get("amount"), "amount"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Balance:
    """Credits of the token's tenant, from `GET /v1/account`."""

    tenant_id: str
    available: Decimal
    """Credits that new jobs can hold."""
    held: Decimal
    """Credits held for running jobs."""
    spent: Decimal
    """Credits captured by jobs, minus refunds."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            tenant_id=data["tenantId"],
            available=parse_credits(data["available"], "available"),
            held=parse_credits(data["held"], "held"),
            spent=parse_credits(data["spent"], "spent"),
            raw=dict(data),
        )


@dataclass(frozen=True)
class IoUrls:
    """Presigned URLs of a job's input and output, from `POST /v1/jobs/{jobId}/io`."""

    upload_url: str
    """PUT the job's input here as the raw request body, before the job starts."""
    download_url: str
    """GET the gzip tar archive of the job's output directory here; 404 until the job's
    command has exited and its outputs are uploaded."""
    input_uri: str
    output_uri: str
    expires_at: datetime
    """Time after which both URLs are rejected."""
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Self:
        return cls(
            upload_url=data["uploadUrl"],
            download_url=data["downloadUrl"],
            input_uri=data["inputUri"],
            output_uri=data["outputUri"],
            expires_at=parse_time(data["expiresAt"], "expiresAt"),
            raw=dict(data),
        )


def parse_credits(value: object, name: str) -> Decimal:
    """Parse an amount of credits that the API sent as a decimal string.

    Raises:
        ValueError: `value` is not a decimal string or an integer. A JSON number with a
            fraction is rejected too, because it was already rounded to a float.
    """
    if isinstance(value, int) and not isinstance(value, bool):
        return Decimal(value)
    if isinstance(value, str):
        try:
            return Decimal(value)
        except InvalidOperation:
            pass
    raise ValueError(f"{name} {value!r} in the API's response is not a decimal string")


def parse_optional_credits(value: object, name: str) -> Decimal | None:
    return None if value is None else parse_credits(value, name)


def parse_time(value: object, name: str) -> datetime:
    """Parse an ISO 8601 time that the API sent.

    Raises:
        ValueError: `value` is not an ISO 8601 string.
    """
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value)
        except ValueError:
            pass
    raise ValueError(f"{name} {value!r} in the API's response is not an ISO 8601 time")


def parse_optional_time(value: object, name: str) -> datetime | None:
    return None if value is None else parse_time(value, name)

"""Request and response bodies of the API, in camelCase JSON.

Clients written for the first version of this service send `agentSpec` and `resourceHint` as
strings that contain JSON objects, so both fields also accept a string and parse it.
"""

import json
import shlex
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from api.credits import Credits
from workflows.types import JobStatus

_JSON_TYPE_NAMES = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
    type(None): "null",
}


MAX_GPU_COUNT = 64
"""Upper bound of `gpuCount`; the largest single machines offered today have 8 or 16 GPUs."""


class CamelModel(BaseModel):
    """Base of the API bodies: camelCase in JSON, snake_case in Python."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


def _parse_json_object(value: object) -> object:
    """Parse a string that contains a JSON object, and pass any other value to the model."""
    if not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as error:
        raise ValueError(
            f"the string is not valid JSON: {error.msg} at line {error.lineno}"
            f" column {error.colno}"
        ) from None
    except RecursionError:
        raise ValueError("the string is not valid JSON: nested too deeply") from None
    if not isinstance(parsed, dict):
        found = _JSON_TYPE_NAMES.get(type(parsed), type(parsed).__name__)
        # A ValueError, because pydantic reports a TypeError from a validator as a 500.
        raise ValueError(f"the string must contain a JSON object, not {found}")  # noqa: TRY004
    return parsed


def _split_command(value: object) -> object:
    """Split a command given as one string into arguments, as a POSIX shell would."""
    if not isinstance(value, str):
        return value
    try:
        return shlex.split(value)
    except ValueError as error:
        raise ValueError(f"the command string cannot be split into arguments: {error}") from None


class AgentSpec(CamelModel):
    """The job's workload: a container image, its command and environment."""

    image: str = Field(
        min_length=1,
        pattern=r"^\S+$",
        description="Container image, such as `python:3.11-slim`.",
    )
    cmd: Annotated[list[str], BeforeValidator(_split_command)] = Field(
        min_length=1,
        description="Command and arguments; a string is split into arguments like a shell does.",
    )
    env: dict[str, str] = Field(
        default_factory=dict,
        description="Environment variables for the command.",
        json_schema_extra={"propertyNames": {"pattern": "^[^=\u0000]+$"}},
    )

    @field_validator("image")
    @classmethod
    def _check_image(cls, image: str) -> str:
        if any(char.isspace() for char in image):
            raise ValueError("must not contain whitespace")
        return image

    @field_validator("cmd")
    @classmethod
    def _check_command(cls, cmd: list[str]) -> list[str]:
        for position, argument in enumerate(cmd):
            if "\0" in argument:
                raise ValueError(f"argument {position} must not contain a NUL character")
        return cmd

    @field_validator("env")
    @classmethod
    def _check_env_names(cls, env: dict[str, str]) -> dict[str, str]:
        for name, value in env.items():
            if not name or "=" in name or "\0" in name:
                raise ValueError(f"invalid variable name {name!r}: must be non-empty without '='")
            if "\0" in value:
                raise ValueError(f"the value of {name} must not contain a NUL character")
        return env


MAX_GPU_TYPE_LENGTH = 64
"""Longest GPU model name accepted, as in `GET /v1/quotes`; Temporal limits search attributes."""


class ResourceHint(CamelModel):
    """The machine resources that a job requests."""

    gpu_type: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_GPU_TYPE_LENGTH,
        pattern=r"^[^\x00-\x1f\x7f]+$",
        description="GPU model such as `A100`; null for CPU only.",
    )
    gpu_count: int | None = Field(
        default=None,
        ge=0,
        le=MAX_GPU_COUNT,
        description="Number of GPUs; defaults to 1 with a gpuType, else 0.",
    )
    spot_ok: bool = Field(
        default=False, description="Whether an interruptible (spot) instance is acceptable."
    )
    policy: Literal["balanced", "cheapest", "fastest"] = Field(
        default="balanced",
        description="How offers are ranked: weighted price, start time and reliability; "
        "lowest price; or shortest expected start.",
    )
    providers: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(
        default_factory=list,
        max_length=16,
        description="Providers the job may run on; empty for every enabled provider.",
    )
    max_price_per_hour: Credits | None = Field(
        default=None, description="Highest acceptable price per hour, in credits."
    )

    @model_validator(mode="after")
    def _default_and_check_gpu_count(self) -> "ResourceHint":
        if self.gpu_count is None:
            self.gpu_count = 1 if self.gpu_type else 0
        if self.gpu_type and self.gpu_count == 0:
            raise ValueError("gpuCount must be at least 1 when gpuType is set")
        if not self.gpu_type and self.gpu_count > 0:
            raise ValueError("gpuType is required when gpuCount is above 0")
        return self


MAX_CALLBACK_URL_LENGTH = 2048
CALLBACK_URL_SCHEMA = {
    "format": "uri",
    "pattern": r"^https?://[A-Za-z0-9.-]+(:[0-9]{1,5})?([/?#].*)?$",
}
"""OpenAPI schema of a callback URL, so that clients and schemathesis know the rule that
`check_callback_url` enforces: an absolute http or https URL with a host."""


def check_callback_url(value: str | None) -> str | None:
    """Validate a webhook URL: absolute http or https with a host."""
    # NOTE: any host is accepted, loopback and private addresses included, so a token holder
    # can make the worker POST to hosts on its network. Restrict hosts before exposing the
    # API to untrusted tenants.
    if value is None:
        return None
    if any(character.isspace() or not character.isprintable() for character in value):
        raise ValueError("must not contain whitespace or control characters")
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("must be an absolute http or https URL, such as https://example.com/hook")
    return value


class SubmitJobRequest(CamelModel):
    """Body of `POST /v1/jobs`."""

    agent_spec: Annotated[AgentSpec, BeforeValidator(_parse_json_object)] = Field(
        description="The workload, as an object or a string that contains one."
    )
    resource_hint: Annotated[ResourceHint, BeforeValidator(_parse_json_object)] = Field(
        default_factory=ResourceHint,
        description="The resources, as an object or a string that contains one.",
    )
    max_budget: Credits = Field(description="Most the job may cost, in credits.")
    user_id: str | None = Field(
        default=None,
        description="Optional; when present it must equal the token's subject.",
    )
    wait_for_input: bool = Field(
        default=False,
        description="Hold the job until `POST /v1/jobs/{jobId}/input-ready`, sent after the"
        " input is uploaded through `POST /v1/jobs/{jobId}/io`; it fails after an hour.",
    )
    callback_url: Annotated[str | None, AfterValidator(check_callback_url)] = Field(
        default=None,
        max_length=MAX_CALLBACK_URL_LENGTH,
        description="http or https URL that receives each status change as a signed POST.",
        json_schema_extra=CALLBACK_URL_SCHEMA,
    )


class CancelJobRequest(CamelModel):
    """Body of `POST /v1/jobs/{jobId}/cancel`; optional."""

    reason: str = Field(
        default="cancelled by the user",
        min_length=1,
        max_length=1000,
        description="Why the job is cancelled; the job's failure reason shows it.",
    )


class JobEventView(CamelModel):
    """One entry of a job's timeline."""

    sequence: int
    time: str = Field(description="ISO 8601 time of the event.")
    type: str = Field(
        description="status, waiting_for_input, input_ready, attempt, attempt_failed,"
        " instance_launched, segment_billed or settled."
    )
    status: JobStatus = Field(description="The job's status after the event.")
    message: str
    provider: str | None = None
    instance_id: str | None = None
    amount: str | None = Field(
        default=None, description="Credits billed by a segment or captured at settlement."
    )


class JobEventsView(CamelModel):
    """Body of `GET /v1/jobs/{jobId}/events`."""

    job_id: str
    events: list[JobEventView]


class WebhookSecretView(CamelModel):
    """Body of `GET /v1/account/webhook-secret`."""

    tenant_id: str
    secret: str = Field(
        description="HMAC-SHA256 key of the tenant's webhook signatures, as 64 hex digits."
    )


class SubmitJobResponse(CamelModel):
    """Body of a `POST /v1/jobs` response."""

    job_id: str
    status: JobStatus


class Quote(CamelModel):
    """The offer that a job runs on, or last ran on."""

    provider: str
    instance_type: str
    region: str
    gpu_type: str | None
    gpu_count: int
    spot: bool
    price_per_hour: str = Field(description="Credits per hour of the whole instance.")


class SegmentView(CamelModel):
    """One stretch of billed usage on one instance."""

    provider: str
    instance_id: str
    price_per_hour: str = Field(description="Quoted price in credits per hour.")
    billable_seconds: int
    cost: str = Field(description="Cost of the segment in credits.")
    end_state: str = Field(description="Instance state at the end, such as PREEMPTED.")


class JobView(CamelModel):
    """Body of `GET /v1/jobs/{jobId}`. Amounts are decimal strings of credits."""

    job_id: str
    status: JobStatus
    failure_reason: str = Field(description="Why the job FAILED or was CANCELLED; else empty.")
    provider: str | None = None
    quote: Quote | None = None
    attempts: int = Field(default=0, description="Provisioning attempts so far.")
    selection_reason: str = Field(
        default="", description="Why the chosen offer won, or why no offer fit the job."
    )
    segments: list[SegmentView] = Field(
        default_factory=list, description="Billed usage of each instance the job ran on."
    )
    exit_code: int | None = None
    max_budget: str | None = None
    held: str | None = Field(default=None, description="Held and not yet captured or released.")
    cost: str | None = Field(default=None, description="Cost so far; after settlement, final.")
    captured: str | None = None
    released: str | None = None
    submitted_at: str | None = None
    started_at: str | None = None
    finished_at: str | None = None



class JobSummary(CamelModel):
    """One job in `GET /v1/jobs`, read from its workflow's search attributes."""

    job_id: str
    status: JobStatus
    provider: str | None = Field(
        description="Provider of the job's current or last instance; null before the first launch."
    )
    gpu_type: str | None = Field(description="Requested GPU model; null for a CPU-only job.")
    cost: str = Field(
        description="Credits accrued as of the job's last status change; final once it ended."
    )
    submitted_at: str = Field(description="ISO 8601 time at which the job's workflow started.")
    closed_at: str | None = Field(
        description="ISO 8601 time at which the job's workflow closed; null while it runs."
    )


class JobList(CamelModel):
    """Body of `GET /v1/jobs`."""

    jobs: list[JobSummary]
    next_cursor: str | None = Field(
        description="Pass as `cursor`, with the same filters, for the next page; null on the"
        " last page, which may be empty."
    )

"""The API's operations as requests to send and parsers of their responses.

`Client` and `AsyncClient` differ only in how they send a request and sleep. Everything else,
from the path and body of each request to the typed result of its response and the waiting
logic of `wait`, lives here once, so the two clients cannot drift apart.
"""

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any, Generic, TypeVar
from urllib.parse import quote

import httpx

from sdk.errors import WaitTimeout
from sdk.models import (
    Balance,
    IoUrls,
    Job,
    JobEvent,
    JobPage,
    QuoteList,
    SubmittedJob,
)

ResultT = TypeVar("ResultT")

TRANSFER_CHUNK_BYTES = 1024 * 1024
"""Size of the chunks in which inputs are uploaded and outputs downloaded."""


@dataclass(frozen=True)
class Operation(Generic[ResultT]):
    """One request to the API and the parser of its successful response."""

    method: str
    path: str
    """Path below the API's root URL, with each path parameter percent-encoded."""
    parse: Callable[[httpx.Response], ResultT]
    params: dict[str, Any] | None = None
    body: Any = None
    """JSON body; `Decimal` values in it are sent as decimal strings. None sends no body."""
    headers: Mapping[str, str] = field(default_factory=dict)

    def encoded_body(self) -> bytes | None:
        if self.body is None:
            return None
        return json.dumps(self.body, default=_json_default).encode()

    def request_headers(self, authorization: str) -> dict[str, str]:
        headers = {"Authorization": authorization, **self.headers}
        if self.body is not None:
            headers["Content-Type"] = "application/json"
        return headers


def _json(response: httpx.Response) -> Any:
    return response.json()


def _job_path(job_id: str, action: str = "") -> str:
    path = f"/v1/jobs/{quote(job_id, safe='')}"
    return f"{path}/{action}" if action else path


def submit_job(
    agent_spec: Mapping[str, Any],
    resource_hint: Mapping[str, Any],
    max_budget: Decimal | str | int,
    *,
    idempotency_key: str | None,
    callback_url: str | None,
    wait_for_input: bool = False,
) -> Operation[SubmittedJob]:
    body: dict[str, Any] = {
        "agentSpec": agent_spec,
        "resourceHint": resource_hint,
        "maxBudget": decimal_string(max_budget, "max_budget"),
    }
    if callback_url is not None:
        body["callbackUrl"] = callback_url
    if wait_for_input:
        body["waitForInput"] = True
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}

    def parse(response: httpx.Response) -> SubmittedJob:
        return SubmittedJob.from_json(
            response.json(), replayed=response.status_code == httpx.codes.OK
        )

    return Operation("POST", "/v1/jobs", parse, body=body, headers=headers)


def get_job(job_id: str) -> Operation[Job]:
    return Operation("GET", _job_path(job_id), lambda response: Job.from_json(response.json()))


def list_jobs(
    *,
    status: str | Sequence[str] | None,
    gpu_type: str | None,
    submitted_after: datetime | str | None,
    submitted_before: datetime | str | None,
    limit: int | None,
    cursor: str | None,
) -> Operation[JobPage]:
    params: dict[str, Any] = {}
    if isinstance(status, str):
        params["status"] = status
    elif status is not None:
        # Sent as a repeated parameter, which the API reads as "any of these".
        params["status"] = list(status)
    if gpu_type is not None:
        params["gpuType"] = gpu_type
    if submitted_after is not None:
        params["submittedAfter"] = datetime_string(submitted_after, "submitted_after")
    if submitted_before is not None:
        params["submittedBefore"] = datetime_string(submitted_before, "submitted_before")
    if limit is not None:
        params["limit"] = limit
    if cursor is not None:
        params["cursor"] = cursor
    return Operation(
        "GET", "/v1/jobs", lambda response: JobPage.from_json(response.json()), params=params
    )


def cancel_job(job_id: str, reason: str | None) -> Operation[Job]:
    body = {"reason": reason} if reason is not None else {}
    return Operation(
        "POST",
        _job_path(job_id, "cancel"),
        lambda response: Job.from_json(response.json()),
        body=body,
    )


def mark_input_ready(job_id: str) -> Operation[Job]:
    return Operation(
        "POST", _job_path(job_id, "input-ready"), lambda response: Job.from_json(response.json())
    )


def job_events(job_id: str) -> Operation[list[JobEvent]]:
    def parse(response: httpx.Response) -> list[JobEvent]:
        return [JobEvent.from_json(event) for event in response.json()["events"]]

    return Operation("GET", _job_path(job_id, "events"), parse)


def job_logs(job_id: str, max_bytes: int | None) -> Operation[str]:
    params = {"maxBytes": max_bytes} if max_bytes is not None else None
    return Operation(
        "GET", _job_path(job_id, "logs"), lambda response: response.text, params=params
    )


def presign_io(job_id: str) -> Operation[IoUrls]:
    return Operation(
        "POST", _job_path(job_id, "io"), lambda response: IoUrls.from_json(response.json())
    )


def get_quotes(
    gpu_type: str | None, gpu_count: int | None, spot_ok: bool
) -> Operation[QuoteList]:
    params: dict[str, Any] = {"spotOk": "true" if spot_ok else "false"}
    if gpu_type is not None:
        params["gpuType"] = gpu_type
    if gpu_count is not None:
        params["gpuCount"] = gpu_count
    return Operation(
        "GET", "/v1/quotes", lambda response: QuoteList.from_json(response.json()), params=params
    )


def get_balance() -> Operation[Balance]:
    return Operation("GET", "/v1/account", lambda response: Balance.from_json(response.json()))


def get_statement(limit: int, cursor: str | None) -> Operation[dict[str, Any]]:
    params: dict[str, Any] = {"limit": limit}
    if cursor is not None:
        params["cursor"] = cursor
    return Operation("GET", "/v1/account/transactions", _json, params=params)


def grant(
    tenant_id: str,
    amount: Decimal | str | int,
    reason: str,
    *,
    idempotency_key: str,
    expires_at: datetime | str | None,
) -> Operation[dict[str, Any]]:
    body: dict[str, Any] = {"amount": decimal_string(amount, "amount"), "reason": reason}
    if expires_at is not None:
        body["expiresAt"] = datetime_string(expires_at, "expires_at")
    return Operation(
        "POST",
        f"/v1/admin/tenants/{quote(tenant_id, safe='')}/grants",
        _json,
        body=body,
        headers={"Idempotency-Key": idempotency_key},
    )


def refund(
    job_id: str,
    reason: str,
    *,
    idempotency_key: str,
    amount: Decimal | str | int | None,
) -> Operation[dict[str, Any]]:
    body: dict[str, Any] = {"reason": reason}
    if amount is not None:
        body["amount"] = decimal_string(amount, "amount")
    return Operation(
        "POST",
        f"/v1/admin/jobs/{quote(job_id, safe='')}/refunds",
        _json,
        body=body,
        headers={"Idempotency-Key": idempotency_key},
    )


def variance(
    *, since: datetime | str | None, provider: str | None, include_all: bool, limit: int
) -> Operation[dict[str, Any]]:
    params: dict[str, Any] = {"limit": limit}
    if since is not None:
        params["since"] = datetime_string(since, "since")
    if provider is not None:
        params["provider"] = provider
    if include_all:
        params["all"] = "true"
    return Operation("GET", "/v1/admin/variance", _json, params=params)


class JobPoller:
    """The waiting logic of `wait`: report changes, stop once the job is final and settled or
    the deadline has passed."""

    def __init__(
        self,
        job_id: str,
        *,
        timeout: float | None,
        poll_interval: float,
        on_update: Callable[[Job], None] | None,
    ) -> None:
        if timeout is not None and timeout < 0:
            raise ValueError(f"timeout must be 0 or more seconds, or None, got {timeout}")
        if poll_interval < 0:
            raise ValueError(f"poll_interval must be 0 or more seconds, got {poll_interval}")
        self._job_id = job_id
        self._timeout = timeout
        self._deadline = None if timeout is None else time.monotonic() + timeout
        self._poll_interval = poll_interval
        self._on_update = on_update
        self._last: Job | None = None

    def observe(self, job: Job) -> float | None:
        """Take the job of one poll; return the seconds to sleep before the next poll, or None
        when the job is final and settled.

        Raises:
            WaitTimeout: the job is not final and settled, and the deadline has passed.
        """
        if self._on_update is not None and (self._last is None or job.raw != self._last.raw):
            self._on_update(job)
        self._last = job
        # A job shows a final status only once its cost is captured and its hold released.
        if job.is_final:
            return None
        if self._deadline is None:
            return self._poll_interval

        remaining = self._deadline - time.monotonic()
        if remaining <= 0:
            raise WaitTimeout(job, self._timeout or 0)
        return min(self._poll_interval, remaining)


def upload_source(source: str | os.PathLike[str] | bytes) -> bytes | Path:
    """Return the bytes to upload, or the path of the file whose content to upload.

    Raises:
        TypeError: `source` is neither bytes nor a path.
        FileNotFoundError: `source` is a path that is not a regular file.
    """
    if isinstance(source, bytes | bytearray | memoryview):
        return bytes(source)
    if not isinstance(source, str | os.PathLike):
        raise TypeError(f"the input must be bytes or a file path, not {type(source).__name__}")
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"input file {path} does not exist or is not a regular file")
    return path


def partial_path(destination: Path) -> Path:
    """Return the file that a download is written to before it replaces `destination`."""
    return destination.with_name(f".{destination.name}.partial")


def decimal_string(amount: Decimal | str | int, name: str) -> str:
    """Return `amount` as the decimal string the API expects, without an exponent.

    Raises:
        ValueError: `amount` is not a finite decimal number.
        TypeError: `amount` is a float or another type that is not exact.
    """
    if isinstance(amount, str):
        try:
            amount = Decimal(amount)
        except InvalidOperation:
            raise ValueError(f"{name} {amount!r} is not a decimal number") from None
    if isinstance(amount, int) and not isinstance(amount, bool):
        amount = Decimal(amount)
    if not isinstance(amount, Decimal):
        raise TypeError(
            f"{name} must be a Decimal, an int or a decimal string, not {type(amount).__name__}"
        )
    if not amount.is_finite():
        raise ValueError(f"{name} must be finite, got {amount}")
    return f"{amount:f}"


def datetime_string(moment: datetime | str, name: str) -> str:
    """Return `moment` as an ISO 8601 string with its timezone.

    Raises:
        ValueError: `moment` is a datetime without a timezone.
        TypeError: `moment` is neither a datetime nor a string.
    """
    if isinstance(moment, str):
        return moment
    if not isinstance(moment, datetime):
        raise TypeError(
            f"{name} must be a datetime or an ISO 8601 string, not {type(moment).__name__}"
        )
    if moment.utcoffset() is None:
        raise ValueError(f"{name} {moment.isoformat()} has no timezone; pass an aware datetime")
    return moment.isoformat()


def _json_default(value: object) -> str:
    if isinstance(value, Decimal):
        return f"{value:f}"
    raise TypeError(f"a {type(value).__name__} cannot be sent as JSON")

"""A small synchronous client of the compute-as-credit HTTP API.

It speaks only HTTP and JSON, so it works against any deployment of the API. Amounts are
sent as decimal strings and returned as the API's decimal strings, never as floats.
"""

import time
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal, InvalidOperation
from types import TracebackType
from typing import Any, Self
from urllib.parse import quote

import httpx

FINAL_STATUSES = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
"""Job statuses after which a job never changes again."""

DEFAULT_TIMEOUT_SECONDS = 30.0
"""Timeout of each HTTP request."""


class ApiError(Exception):
    """The API returned an error status."""

    def __init__(self, status_code: int, detail: Any) -> None:
        super().__init__(f"HTTP {status_code}: {detail}")
        self.status_code = status_code
        """HTTP status code of the response."""
        self.detail = detail
        """The response's `detail` field: a message, or a list of validation errors for 422."""


class Client:
    """Client of one API deployment, authenticated by one bearer token.

    Use it as a context manager, or call `close()`, to release its connections.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        """Create a client.

        Args:
            base_url: The API's root URL, such as "http://127.0.0.1:8080".
            token: A bearer token from `cac token` or the platform operator.
            timeout: Timeout of each HTTP request, in seconds.
            transport: An httpx transport to use instead of the network, as in tests.
        """
        self._http = httpx.Client(
            base_url=base_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=timeout,
            transport=transport,
        )

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Close the client's connections."""
        self._http.close()

    def submit(
        self,
        agent_spec: dict[str, Any],
        resource_hint: dict[str, Any],
        max_budget: Decimal | str,
        idempotency_key: str | None = None,
    ) -> dict[str, Any]:
        """Submit a job and return `{"jobId": ..., "status": ...}`.

        Args:
            agent_spec: `{"image": ..., "cmd": [...], "env": {...}}`.
            resource_hint: `{"gpuType": ..., "gpuCount": ..., "spotOk": ...}`; `{}` for CPU.
            max_budget: Most the job may cost, in credits, as a Decimal or a decimal string.
            idempotency_key: Sent as the Idempotency-Key header, so that a retry of this
                call returns the same job instead of starting a second one.

        Raises:
            ApiError: the API rejected the request.
            ValueError: `max_budget` is not a finite decimal number.
            TypeError: `max_budget` is neither a Decimal nor a string.
        """
        body = {
            "agentSpec": agent_spec,
            "resourceHint": resource_hint,
            "maxBudget": _decimal_string(max_budget, "max_budget"),
        }
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key is not None else {}
        return self._request("POST", "/v1/jobs", json=body, headers=headers)

    def get(self, job_id: str) -> dict[str, Any]:
        """Return a job's current state, as `GET /v1/jobs/{jobId}` returns it.

        Raises:
            ApiError: the job does not exist for this token's tenant (404), or another error.
        """
        return self._request("GET", f"/v1/jobs/{job_id}")

    def wait(
        self,
        job_id: str,
        timeout: float,
        poll: float = 1.0,
        on_update: Callable[[dict[str, Any]], None] | None = None,
    ) -> dict[str, Any]:
        """Poll a job until its status is SUCCEEDED, FAILED or CANCELLED, and return it.

        Args:
            job_id: The job to wait for.
            timeout: Seconds to wait in total.
            poll: Seconds between two requests.
            on_update: Called with the job on the first poll and each time its status changes.

        Raises:
            TimeoutError: the job is not final after `timeout` seconds.
            ApiError: a request failed.
        """
        deadline = time.monotonic() + timeout
        last_status = None
        while True:
            job = self.get(job_id)
            if job["status"] != last_status:
                last_status = job["status"]
                if on_update is not None:
                    on_update(job)
            if job["status"] in FINAL_STATUSES:
                return job

            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(
                    f"job {job_id} is still {job['status']} after {timeout} s"
                )
            time.sleep(min(poll, remaining))

    def balance(self) -> dict[str, Any]:
        """Return the tenant's credits: `{"tenantId", "available", "held", "spent"}`.

        Needs a token with the `billing:read` scope.

        Raises:
            ApiError: the request failed.
        """
        return self._request("GET", "/v1/account")

    def quotes(
        self, gpu_type: str | None = None, gpu_count: int | None = None, spot_ok: bool = False
    ) -> dict[str, Any]:
        """Return the offers a job with these resources would choose from, cheapest first:
        `{"offers": [...], "failedProviders": [...]}`. Needs the `jobs:read` scope.

        Raises:
            ApiError: the request failed.
        """
        params: dict[str, Any] = {"spotOk": "true" if spot_ok else "false"}
        if gpu_type is not None:
            params["gpuType"] = gpu_type
        if gpu_count is not None:
            params["gpuCount"] = gpu_count
        return self._request("GET", "/v1/quotes", params=params)

    def statement(self, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        """Return one page of the tenant's transactions, newest first.

        Needs a token with the `billing:read` scope.

        Args:
            limit: Most entries on the page, from 1 to 200.
            cursor: `nextCursor` of the previous page; None for the newest page.

        Returns:
            `{"entries": [...], "nextCursor": ...}`, where `nextCursor` is None on the last
            page. Each entry has `transactionId`, `createdAt`, `type`, `jobId`, `amount` (the
            change of the available balance), `heldChange`, `reason` and `balanceAfter`.

        Raises:
            ApiError: the request failed, for example 422 for a limit out of range.
        """
        params: dict[str, Any] = {"limit": limit}
        if cursor is not None:
            params["cursor"] = cursor
        return self._request("GET", "/v1/account/transactions", params=params)

    def grant(
        self,
        tenant_id: str,
        amount: Decimal | str,
        reason: str,
        *,
        idempotency_key: str,
        expires_at: datetime | str | None = None,
    ) -> dict[str, Any]:
        """Grant credits to a tenant and return the posted transaction.

        Needs a token with the `billing:admin` scope.

        Args:
            tenant_id: Tenant that receives the credits.
            amount: Credits to grant, as a Decimal or a decimal string.
            reason: Why the credits are granted; the tenant's statement shows it.
            idempotency_key: The ledger's key for the grant. A retry with the same key
                returns the first grant, with `replayed` true, instead of granting again.
            expires_at: When the credits expire, as an aware datetime or an ISO 8601 string
                with a timezone; None for never.

        Raises:
            ApiError: the request failed, for example 422 when the key was used before
                with another amount.
            ValueError: `amount` is not a finite decimal number, or `expires_at` is a
                datetime without a timezone.
            TypeError: `amount` or `expires_at` has another type.
        """
        body: dict[str, Any] = {"amount": _decimal_string(amount, "amount"), "reason": reason}
        if expires_at is not None:
            body["expiresAt"] = _datetime_string(expires_at)
        return self._request(
            "POST",
            f"/v1/admin/tenants/{quote(tenant_id, safe='')}/grants",
            json=body,
            headers={"Idempotency-Key": idempotency_key},
        )

    def refund(
        self,
        job_id: str,
        reason: str,
        *,
        idempotency_key: str,
        amount: Decimal | str | None = None,
    ) -> dict[str, Any]:
        """Refund part or all of a job's captured cost and return the posted transaction.

        Needs a token with the `billing:admin` scope.

        Args:
            job_id: Job whose cost is refunded, to the tenant that paid it.
            reason: Why the job is refunded; the tenant's statement shows it.
            idempotency_key: The ledger's key for the refund. A retry with the same key
                returns the first refund, with `replayed` true, instead of refunding again.
            amount: Credits to refund; None for all that is left to refund.

        Raises:
            ApiError: the request failed: 404 when the job has no hold in the ledger, 422
                when `amount` exceeds what is left to refund.
            ValueError: `amount` is not a finite decimal number.
            TypeError: `amount` has another type.
        """
        body: dict[str, Any] = {"reason": reason}
        if amount is not None:
            body["amount"] = _decimal_string(amount, "amount")
        return self._request(
            "POST",
            f"/v1/admin/jobs/{quote(job_id, safe='')}/refunds",
            json=body,
            headers={"Idempotency-Key": idempotency_key},
        )

    def variance(
        self,
        *,
        since: datetime | str | None = None,
        provider: str | None = None,
        include_all: bool = False,
        limit: int = 100,
    ) -> dict[str, Any]:
        """Return the jobs whose providers charged more than they quoted, largest first.

        Needs a token with the `billing:admin` scope.

        Args:
            since: Only jobs charged at or after this time, with a timezone.
            provider: Only jobs with a segment on this provider.
            include_all: Also list jobs charged at or below their quotes.
            limit: Maximum number of jobs, from 1 to 1000.
        """
        params: dict[str, Any] = {"limit": limit}
        if since is not None:
            params["since"] = _datetime_string(since)
        if provider is not None:
            params["provider"] = provider
        if include_all:
            params["all"] = "true"
        return self._request("GET", "/v1/admin/variance", params=params)

    def _request(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        response = self._http.request(method, path, **options)
        if response.is_error:
            raise ApiError(response.status_code, _error_detail(response))
        return response.json()


def _decimal_string(amount: Decimal | str, name: str) -> str:
    if isinstance(amount, str):
        try:
            amount = Decimal(amount)
        except InvalidOperation:
            raise ValueError(f"{name} {amount!r} is not a decimal number") from None
    if not isinstance(amount, Decimal):
        raise TypeError(
            f"{name} must be a Decimal or a decimal string, not {type(amount).__name__}"
        )
    if not amount.is_finite():
        raise ValueError(f"{name} must be finite, got {amount}")
    return str(amount)


def _datetime_string(moment: datetime | str) -> str:
    if isinstance(moment, str):
        return moment
    if not isinstance(moment, datetime):
        raise TypeError(
            f"expires_at must be a datetime or an ISO 8601 string, not {type(moment).__name__}"
        )
    if moment.utcoffset() is None:
        raise ValueError(
            f"expires_at {moment.isoformat()} has no timezone; pass an aware datetime"
        )
    return moment.isoformat()


def _error_detail(response: httpx.Response) -> Any:
    try:
        body = response.json()
    except ValueError:
        return response.text
    if isinstance(body, dict) and "detail" in body:
        return body["detail"]
    return body

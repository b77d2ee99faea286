"""The synchronous client of the compute-as-credit HTTP API.

It speaks only HTTP and JSON, so it works against any deployment of the API. Amounts are sent
as decimal strings and returned as `Decimal`, never as floats. `sdk.AsyncClient` has the same
methods for asyncio; both build their requests and parse their responses in
`sdk._operations`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import httpx

from sdk import _operations as operations
from sdk._operations import JobPoller, Operation, partial_path, upload_source
from sdk.errors import ApiError, WaitTimeout, error_from_response
from sdk.models import (
    FINAL_STATUSES,
    Balance,
    IoUrls,
    Job,
    JobEvent,
    JobPage,
    JobSummary,
    QuoteList,
    SubmittedJob,
)

__all__ = ["DEFAULT_TIMEOUT_SECONDS", "FINAL_STATUSES", "ApiError", "Client", "WaitTimeout"]

DEFAULT_TIMEOUT_SECONDS = 30.0
"""Timeout of each HTTP request, in seconds."""

ResultT = TypeVar("ResultT")


class Client:
    """Client of one API deployment, authenticated by one bearer token.

    Use it as a context manager, or call `close()`, to release its connections. Every method
    raises `ApiError` when the API rejects the request and `httpx.HTTPError` when the API
    cannot be reached.
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
        # The token goes on each API request, not on the client, so that it is never sent to
        # a presigned object store URL.
        self._authorization = f"Bearer {token}"
        self._http = httpx.Client(base_url=base_url, timeout=timeout, transport=transport)

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
        agent_spec: Mapping[str, Any],
        resource_hint: Mapping[str, Any],
        max_budget: Decimal | str | int,
        idempotency_key: str | None = None,
        *,
        callback_url: str | None = None,
        wait_for_input: bool = False,
    ) -> SubmittedJob:
        """Submit a job. Needs the `jobs:write` scope.

        Args:
            agent_spec: `{"image": ..., "cmd": [...], "env": {...}}`.
            resource_hint: `{"gpuType", "gpuCount", "spotOk", "policy", "providers",
                "maxPricePerHour"}`, each optional; `{}` for a CPU job. Decimal values are
                sent as decimal strings.
            max_budget: Maximum the job may cost, in credits.
            idempotency_key: Sent as the Idempotency-Key header, so that a retry of this
                call returns the same job instead of starting a second one.
            callback_url: URL that receives a signed POST at each of the job's status changes.
            wait_for_input: Hold the job until its input is uploaded with `upload_input`,
                which then marks it ready; the job fails after an hour without it.

        Raises:
            ApiError: the API rejected the request, such as 422 for an invalid field.
            ValueError: `max_budget` is not a finite decimal number.
            TypeError: `max_budget` is a float or another inexact type.
        """
        return self._call(
            operations.submit_job(
                agent_spec,
                resource_hint,
                max_budget,
                idempotency_key=idempotency_key,
                callback_url=callback_url,
                wait_for_input=wait_for_input,
            )
        )

    def get(self, job_id: str) -> Job:
        """Return a job's current state. Needs the `jobs:read` scope.

        Raises:
            ApiError: the job does not exist for this token's tenant (404), no worker
                answered the state query (503), or another error.
        """
        return self._call(operations.get_job(job_id))

    def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        gpu_type: str | None = None,
        submitted_after: datetime | str | None = None,
        submitted_before: datetime | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        """Return one page of the tenant's jobs, newest first. Needs the `jobs:read` scope.

        Args:
            status: Only jobs with this status, such as "RUNNING", or with any of these.
            gpu_type: Only jobs that requested this GPU type.
            submitted_after: Only jobs submitted after this time, with a timezone.
            submitted_before: Only jobs submitted before this time, with a timezone.
            limit: Maximum number of jobs on the page; None for the API's default.
            cursor: `next_cursor` of the previous page; None for the first page.

        Raises:
            ApiError: the request failed, such as 422 for an unknown status.
            ValueError: a time is a datetime without a timezone.
        """
        return self._call(
            operations.list_jobs(
                status=status,
                gpu_type=gpu_type,
                submitted_after=submitted_after,
                submitted_before=submitted_before,
                limit=limit,
                cursor=cursor,
            )
        )

    def iter_jobs(
        self,
        *,
        status: str | Sequence[str] | None = None,
        gpu_type: str | None = None,
        submitted_after: datetime | str | None = None,
        submitted_before: datetime | str | None = None,
        page_size: int | None = None,
    ) -> Iterator[JobSummary]:
        """Yield every job that `list` would return with these filters, page after page.

        Each page is requested when the previous one is used up.
        """
        cursor = None
        while True:
            page = self.list(
                status=status,
                gpu_type=gpu_type,
                submitted_after=submitted_after,
                submitted_before=submitted_before,
                limit=page_size,
                cursor=cursor,
            )
            yield from page.jobs
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float = 1.0,
        on_update: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll a job until it is SUCCEEDED, FAILED or CANCELLED and settled, and return it.

        Settled means that the job's cost is captured and the rest of its hold released, so
        the returned amounts are final. The job is returned whatever its final status, so
        check `status`.

        Args:
            job_id: The job to wait for.
            timeout: Seconds to wait in total; None waits until the job is final and settled.
            poll_interval: Seconds between two requests.
            on_update: Called with the job after the first poll and after each poll whose
                response differs from the previous one, such as a new status or cost.

        Raises:
            WaitTimeout: the job is not final and settled after `timeout` seconds; its `job`
                is the last state read.
            ApiError: a request failed.
            ValueError: `timeout` or `poll_interval` is negative.
        """
        poller = JobPoller(
            job_id, timeout=timeout, poll_interval=poll_interval, on_update=on_update
        )
        while True:
            job = self.get(job_id)
            delay = poller.observe(job)
            if delay is None:
                return job
            time.sleep(delay)

    def cancel(self, job_id: str, reason: str | None = None) -> Job:
        """Request that a job stop, and return its state when the request was accepted.

        The job tears its instance down, settles what it used and ends CANCELLED; `wait`
        for that. A second cancel of a running job changes nothing. Needs the `jobs:write`
        scope.

        Raises:
            ApiError: the job does not exist for this token's tenant (404), its workflow has
                already ended (409), or another error.
        """
        return self._call(operations.cancel_job(job_id, reason))

    def events(self, job_id: str) -> list[JobEvent]:
        """Return a job's timeline, oldest event first. Needs the `jobs:read` scope.

        Raises:
            ApiError: the job does not exist for this token's tenant (404), or another error.
        """
        return self._call(operations.job_events(job_id))

    def logs(self, job_id: str, max_bytes: int | None = None) -> str:
        """Return the output that a job's command wrote so far. Needs the `jobs:read` scope.

        The text has a part per instance the job ran on, oldest first, each under a
        `==> attempt N: provider/instance <==` line.

        Args:
            job_id: The job.
            max_bytes: Maximum bytes of each instance's output, from its end; None for the
                API's default of 64 KiB.

        Raises:
            ApiError: the job does not exist for this token's tenant or has not launched an
                instance yet (404), or another error.
        """
        return self._call(operations.job_logs(job_id, max_bytes))

    def io_urls(self, job_id: str) -> IoUrls:
        """Return new presigned URLs of a job's input and output. Needs the `jobs:write` scope.

        Raises:
            ApiError: the job does not exist for this token's tenant (404), or another error.
        """
        return self._call(operations.presign_io(job_id))

    def upload_input(
        self, job_id: str, source: str | os.PathLike[str] | bytes, *, mark_ready: bool = True
    ) -> IoUrls:
        """Upload a job's input, from a file or bytes, and return the URLs used.

        The job reads its input when its instance is provisioned, so submit it with
        `wait_for_input=True`. This call then marks it ready (`mark_ready`) once the upload is
        complete. Needs the `jobs:write` scope.

        Raises:
            ApiError: the API or the object store rejected a request.
            FileNotFoundError: `source` is a path that is not a regular file.
            TypeError: `source` is neither bytes nor a path.
        """
        data = upload_source(source)
        urls = self.io_urls(job_id)
        if isinstance(data, bytes):
            response = self._http.put(urls.upload_url, content=data)
        else:
            # httpx reads the file in chunks and sends its size as Content-Length.
            with data.open("rb") as file:
                response = self._http.put(urls.upload_url, content=file)
        if response.is_error:
            raise error_from_response(response)
        if mark_ready:
            self.mark_input_ready(job_id)
        return urls

    def mark_input_ready(self, job_id: str) -> Job:
        """Let a job submitted with `wait_for_input=True` go on to placement.

        Raises:
            ApiError: 404 for another tenant's job, 409 once the job has ended.
        """
        return self._call(operations.mark_input_ready(job_id))

    def download_output(self, job_id: str, destination: str | os.PathLike[str]) -> Path:
        """Download the gzip tar archive of a job's outputs to the file `destination`.

        The archive is written next to `destination` first and moved there once complete, so
        a failed download leaves no partial file. Needs the `jobs:write` scope.

        Returns:
            The path of the written archive.

        Raises:
            ApiError: the API or the object store rejected a request; 404 from the store
                until the job's command has exited and its outputs are uploaded.
        """
        target = Path(destination)
        urls = self.io_urls(job_id)
        with self._http.stream("GET", urls.download_url) as response:
            if response.is_error:
                response.read()
                raise error_from_response(response)
            partial = partial_path(target)
            try:
                with partial.open("wb") as file:
                    for chunk in response.iter_bytes(operations.TRANSFER_CHUNK_BYTES):
                        file.write(chunk)
                partial.replace(target)
            finally:
                partial.unlink(missing_ok=True)
        return target

    def quotes(
        self, gpu_type: str | None = None, gpu_count: int | None = None, spot_ok: bool = False
    ) -> QuoteList:
        """Return the offers a job with these resources would choose from, cheapest first.

        Needs the `jobs:read` scope.

        Raises:
            ApiError: the request failed.
        """
        return self._call(operations.get_quotes(gpu_type, gpu_count, spot_ok))

    def balance(self) -> Balance:
        """Return the tenant's available, held and spent credits.

        Needs the `billing:read` scope.

        Raises:
            ApiError: the request failed.
        """
        return self._call(operations.get_balance())

    def statement(self, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        """Return one page of the tenant's transactions, newest first.

        Needs the `billing:read` scope.

        Args:
            limit: Maximum number of entries on the page, from 1 to 200.
            cursor: `nextCursor` of the previous page; None for the newest page.

        Returns:
            `{"entries": [...], "nextCursor": ...}`, where `nextCursor` is None on the last
            page. Each entry has `transactionId`, `createdAt`, `type`, `jobId`, `amount` (the
            change of the available balance), `heldChange`, `reason` and `balanceAfter`.

        Raises:
            ApiError: the request failed, for example 422 for a limit out of range.
        """
        return self._call(operations.get_statement(limit, cursor))

    def grant(
        self,
        tenant_id: str,
        amount: Decimal | str | int,
        reason: str,
        *,
        idempotency_key: str,
        expires_at: datetime | str | None = None,
    ) -> dict[str, Any]:
        """Grant credits to a tenant and return the posted transaction.

        Needs the `billing:admin` scope.

        Args:
            tenant_id: Tenant that receives the credits.
            amount: Credits to grant.
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
        return self._call(
            operations.grant(
                tenant_id, amount, reason, idempotency_key=idempotency_key, expires_at=expires_at
            )
        )

    def refund(
        self,
        job_id: str,
        reason: str,
        *,
        idempotency_key: str,
        amount: Decimal | str | int | None = None,
    ) -> dict[str, Any]:
        """Refund part or all of a job's captured cost and return the posted transaction.

        Needs the `billing:admin` scope.

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
        return self._call(
            operations.refund(job_id, reason, idempotency_key=idempotency_key, amount=amount)
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

        Needs the `billing:admin` scope.

        Args:
            since: Only jobs charged at or after this time, with a timezone.
            provider: Only jobs with a segment on this provider.
            include_all: Also list jobs charged at or below their quotes.
            limit: Maximum number of jobs, from 1 to 1000.
        """
        return self._call(
            operations.variance(
                since=since, provider=provider, include_all=include_all, limit=limit
            )
        )

    def _call(self, operation: Operation[ResultT]) -> ResultT:
        response = self._http.request(
            operation.method,
            operation.path,
            params=operation.params,
            content=operation.encoded_body(),
            headers=operation.request_headers(self._authorization),
        )
        if response.is_error:
            raise error_from_response(response)
        return operation.parse(response)

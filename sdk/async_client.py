"""The asyncio client of the compute-as-credit HTTP API.

`AsyncClient` has the methods of `sdk.Client`, as coroutines, with the same arguments, results
and errors; the docstrings of `Client` describe them in full.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from datetime import datetime
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import Any, Self, TypeVar

import anyio
import httpx

from sdk import _operations as operations
from sdk._operations import JobPoller, Operation, partial_path, upload_source
from sdk.client import DEFAULT_TIMEOUT_SECONDS
from sdk.errors import error_from_response
from sdk.models import (
    Balance,
    IoUrls,
    Job,
    JobEvent,
    JobPage,
    JobSummary,
    QuoteList,
    SubmittedJob,
)

ResultT = TypeVar("ResultT")


class AsyncClient:
    """Asyncio client of one API deployment, authenticated by one bearer token.

    Use it as an async context manager, or await `aclose()`, to release its connections.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        """Create a client; the arguments are those of `Client`."""
        # The token goes on each API request, not on the client, so that it is never sent to
        # a presigned object store URL.
        self._authorization = f"Bearer {token}"
        self._http = httpx.AsyncClient(base_url=base_url, timeout=timeout, transport=transport)

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the client's connections."""
        await self._http.aclose()

    async def submit(
        self,
        agent_spec: Mapping[str, Any],
        resource_hint: Mapping[str, Any],
        max_budget: Decimal | str | int,
        idempotency_key: str | None = None,
        *,
        callback_url: str | None = None,
        wait_for_input: bool = False,
    ) -> SubmittedJob:
        """Submit a job; see `Client.submit`."""
        return await self._call(
            operations.submit_job(
                agent_spec,
                resource_hint,
                max_budget,
                idempotency_key=idempotency_key,
                callback_url=callback_url,
                wait_for_input=wait_for_input,
            )
        )

    async def get(self, job_id: str) -> Job:
        """Return a job's current state; see `Client.get`."""
        return await self._call(operations.get_job(job_id))

    async def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        gpu_type: str | None = None,
        submitted_after: datetime | str | None = None,
        submitted_before: datetime | str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> JobPage:
        """Return one page of the tenant's jobs, newest first; see `Client.list`."""
        return await self._call(
            operations.list_jobs(
                status=status,
                gpu_type=gpu_type,
                submitted_after=submitted_after,
                submitted_before=submitted_before,
                limit=limit,
                cursor=cursor,
            )
        )

    async def iter_jobs(
        self,
        *,
        status: str | Sequence[str] | None = None,
        gpu_type: str | None = None,
        submitted_after: datetime | str | None = None,
        submitted_before: datetime | str | None = None,
        page_size: int | None = None,
    ) -> AsyncIterator[JobSummary]:
        """Yield every job that `list` would return with these filters, page after page."""
        cursor = None
        while True:
            page = await self.list(
                status=status,
                gpu_type=gpu_type,
                submitted_after=submitted_after,
                submitted_before=submitted_before,
                limit=page_size,
                cursor=cursor,
            )
            for job in page.jobs:
                yield job
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def wait(
        self,
        job_id: str,
        *,
        timeout: float | None = None,
        poll_interval: float = 1.0,
        on_update: Callable[[Job], None] | None = None,
    ) -> Job:
        """Poll a job until it is SUCCEEDED, FAILED or CANCELLED and settled, and return it;
        see `Client.wait`."""
        poller = JobPoller(
            job_id, timeout=timeout, poll_interval=poll_interval, on_update=on_update
        )
        while True:
            job = await self.get(job_id)
            delay = poller.observe(job)
            if delay is None:
                return job
            await anyio.sleep(delay)

    async def cancel(self, job_id: str, reason: str | None = None) -> Job:
        """Request that a job stop; see `Client.cancel`."""
        return await self._call(operations.cancel_job(job_id, reason))

    async def events(self, job_id: str) -> list[JobEvent]:
        """Return a job's timeline, oldest event first; see `Client.events`."""
        return await self._call(operations.job_events(job_id))

    async def logs(self, job_id: str, max_bytes: int | None = None) -> str:
        """Return the output that a job's command wrote so far; see `Client.logs`."""
        return await self._call(operations.job_logs(job_id, max_bytes))

    async def io_urls(self, job_id: str) -> IoUrls:
        """Return new presigned URLs of a job's input and output; see `Client.io_urls`."""
        return await self._call(operations.presign_io(job_id))

    async def upload_input(
        self, job_id: str, source: str | os.PathLike[str] | bytes, *, mark_ready: bool = True
    ) -> IoUrls:
        """Upload a job's input, from a file or bytes; see `Client.upload_input`."""
        data = upload_source(source)
        urls = await self.io_urls(job_id)
        if isinstance(data, bytes):
            response = await self._http.put(urls.upload_url, content=data)
        else:
            # With the size given, httpx sends Content-Length instead of a chunked body,
            # which S3 rejects for a presigned PUT.
            size = (await anyio.Path(data).stat()).st_size
            response = await self._http.put(
                urls.upload_url,
                content=_read_chunks(data),
                headers={"Content-Length": str(size)},
            )
        if response.is_error:
            raise error_from_response(response)
        if mark_ready:
            await self.mark_input_ready(job_id)
        return urls

    async def mark_input_ready(self, job_id: str) -> Job:
        """Let a job submitted with `wait_for_input=True` go on; see `Client.mark_input_ready`."""
        return await self._call(operations.mark_input_ready(job_id))

    async def download_output(self, job_id: str, destination: str | os.PathLike[str]) -> Path:
        """Download the archive of a job's outputs to a file; see `Client.download_output`."""
        target = Path(destination)
        urls = await self.io_urls(job_id)
        async with self._http.stream("GET", urls.download_url) as response:
            if response.is_error:
                await response.aread()
                raise error_from_response(response)
            partial = partial_path(target)
            try:
                async with await anyio.open_file(partial, "wb") as file:
                    async for chunk in response.aiter_bytes(operations.TRANSFER_CHUNK_BYTES):
                        await file.write(chunk)
                await anyio.Path(partial).replace(target)
            finally:
                await anyio.Path(partial).unlink(missing_ok=True)
        return target

    async def quotes(
        self, gpu_type: str | None = None, gpu_count: int | None = None, spot_ok: bool = False
    ) -> QuoteList:
        """Return the offers a job with these resources would choose from; see
        `Client.quotes`."""
        return await self._call(operations.get_quotes(gpu_type, gpu_count, spot_ok))

    async def balance(self) -> Balance:
        """Return the tenant's available, held and spent credits; see `Client.balance`."""
        return await self._call(operations.get_balance())

    async def statement(self, limit: int = 50, cursor: str | None = None) -> dict[str, Any]:
        """Return one page of the tenant's transactions; see `Client.statement`."""
        return await self._call(operations.get_statement(limit, cursor))

    async def grant(
        self,
        tenant_id: str,
        amount: Decimal | str | int,
        reason: str,
        *,
        idempotency_key: str,
        expires_at: datetime | str | None = None,
    ) -> dict[str, Any]:
        """Grant credits to a tenant; see `Client.grant`."""
        return await self._call(
            operations.grant(
                tenant_id, amount, reason, idempotency_key=idempotency_key, expires_at=expires_at
            )
        )

    async def refund(
        self,
        job_id: str,
        reason: str,
        *,
        idempotency_key: str,
        amount: Decimal | str | int | None = None,
    ) -> dict[str, Any]:
        """Refund part or all of a job's captured cost; see `Client.refund`."""
        return await self._call(
            operations.refund(job_id, reason, idempotency_key=idempotency_key, amount=amount)
        )

    async def variance(
        self,
        *,
        since: datetime | str | None = None,
        provider: str | None = None,
        include_all: bool = False,
        limit: int = 100,
    ) -> dict[str, Any]:
        """Return the jobs whose providers charged more than they quoted; see
        `Client.variance`."""
        return await self._call(
            operations.variance(
                since=since, provider=provider, include_all=include_all, limit=limit
            )
        )

    async def _call(self, operation: Operation[ResultT]) -> ResultT:
        response = await self._http.request(
            operation.method,
            operation.path,
            params=operation.params,
            content=operation.encoded_body(),
            headers=operation.request_headers(self._authorization),
        )
        if response.is_error:
            raise error_from_response(response)
        return operation.parse(response)


async def _read_chunks(path: Path) -> AsyncIterator[bytes]:
    async with await anyio.open_file(path, "rb") as file:
        while chunk := await file.read(operations.TRANSFER_CHUNK_BYTES):
            yield chunk

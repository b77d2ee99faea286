"""`AsyncClient` against the running system of `tests.support.job_stack`.

The request building and response parsing are those of `Client`, tested in `test_client.py`.
These tests cover what the async client does on its own: sending, sleeping between polls,
paging, and streaming files in and out.
"""

import asyncio
import tarfile
import time
from decimal import Decimal

import pytest

from sdk import ApiError, AsyncClient, Balance, JobPage, WaitTimeout
from storage import build_object_store, job_input_key
from tests.sdk.test_client import (
    T4_JOB,
    VISIBILITY_TIMEOUT_SECONDS,
    WAIT,
    WRITE_OUTPUT,
    cpu_job,
)


@pytest.fixture
async def client(stack):
    """Async client of a new tenant with 10 credits."""
    async with AsyncClient(stack.url, stack.token(stack.new_tenant())) as client:
        yield client


async def test_wait_returns_settled_succeeded_job(client):
    seen: list[str] = []

    submitted = await client.submit(T4_JOB, {"gpuType": "T4"}, "5")
    job = await client.wait(
        submitted.job_id, on_update=lambda update: seen.append(update.status), **WAIT
    )
    events = await client.events(submitted.job_id)
    balance = await client.balance()

    assert job.status == "SUCCEEDED"
    assert job.provider == "fast"
    assert job.cost == Decimal("0.001")
    assert job.captured == Decimal("0.001")
    assert job.released == Decimal("4.999")
    assert job.held == 0
    assert seen[-1] == "SUCCEEDED"
    assert [event.type for event in events][-3:] == ["segment_billed", "settled", "status"]
    assert balance == Balance(
        tenant_id=balance.tenant_id,
        available=Decimal("9.999"),
        held=Decimal(0),
        spent=Decimal("0.001"),
    )


async def test_wait_raises_timeout_then_cancel_ends_job(client):
    job_id = (await client.submit(T4_JOB, {"gpuType": "A100"}, "5")).job_id

    with pytest.raises(WaitTimeout) as raised:
        await client.wait(job_id, timeout=0.3, poll_interval=0.1)
    await client.cancel(job_id, reason="took too long")
    job = await client.wait(job_id, **WAIT)

    assert raised.value.job.is_final is False
    assert job.status == "CANCELLED"
    assert job.failure_reason == "took too long"
    assert job.held == 0


async def test_wait_polls_concurrently_with_other_requests(client):
    job_ids = [(await client.submit(T4_JOB, {"gpuType": "T4"}, "5")).job_id for _ in range(2)]

    jobs = await asyncio.gather(*(client.wait(job_id, **WAIT) for job_id in job_ids))

    assert [job.job_id for job in jobs] == job_ids
    assert [job.status for job in jobs] == ["SUCCEEDED", "SUCCEEDED"]


async def test_iter_jobs_reads_every_page(client):
    succeeded = (await client.submit(T4_JOB, {"gpuType": "T4"}, "5")).job_id
    failed = (await client.submit(T4_JOB, {"gpuType": "H100"}, "5")).job_id
    for job_id in (succeeded, failed):
        await client.wait(job_id, **WAIT)
    expected = {succeeded: "SUCCEEDED", failed: "FAILED"}
    page = await list_until(client, lambda page: statuses(page) == expected)

    every_job = [job async for job in client.iter_jobs(page_size=1)]

    assert statuses(page) == expected
    assert {job.job_id: job.status for job in every_job} == expected
    assert len(every_job) == 2


async def test_upload_input_streams_file_to_store(client, stack, tmp_path):
    job_id = (await client.submit(T4_JOB, {"gpuType": "A100"}, "5")).job_id
    input_file = tmp_path / "input.bin"
    # Larger than one transfer chunk, so that the upload takes several reads.
    input_file.write_bytes(bytes(range(256)) * 8192)
    store = build_object_store(stack.settings)

    urls = await client.upload_input(job_id, input_file)
    await client.cancel(job_id)
    await client.wait(job_id, **WAIT)

    assert urls.input_uri == store.uri(job_input_key(job_id))
    assert store.path(job_input_key(job_id)).read_bytes() == input_file.read_bytes()


async def test_download_output_of_local_job_writes_archive(client, tmp_path):
    job_id = (await client.submit(cpu_job(WRITE_OUTPUT), {}, "1")).job_id
    await client.wait(job_id, **WAIT)

    archive = await client.download_output(job_id, tmp_path / "output.tar.gz")
    logs = await client.logs(job_id)

    with tarfile.open(archive) as contents:
        assert contents.getnames() == ["answer.txt"]
        assert contents.extractfile("answer.txt").read() == b"42"
    assert "the answer is 42\n" in logs


async def test_download_output_before_outputs_exist_raises_not_found(client, tmp_path):
    job_id = (await client.submit(T4_JOB, {"gpuType": "A100"}, "5")).job_id

    with pytest.raises(ApiError) as raised:
        await client.download_output(job_id, tmp_path / "output.tar.gz")
    await client.cancel(job_id)
    await client.wait(job_id, **WAIT)

    assert raised.value.status_code == 404
    assert list(tmp_path.iterdir()) == []


async def test_get_other_tenants_job_raises_not_found(client, stack):
    job_id = (await client.submit(T4_JOB, {"gpuType": "T4"}, "5")).job_id
    await client.wait(job_id, **WAIT)

    async with AsyncClient(stack.url, stack.token(stack.new_tenant())) as stranger:
        with pytest.raises(ApiError) as raised:
            await stranger.get(job_id)

    assert raised.value.status_code == 404
    assert raised.value.detail == f"job {job_id} not found"


def statuses(page: JobPage) -> dict[str, str]:
    return {job.job_id: job.status for job in page.jobs}


async def list_until(client: AsyncClient, ready) -> JobPage:
    """List jobs until `ready` accepts the page; see `tests.sdk.test_client.list_until`."""
    deadline = time.monotonic() + VISIBILITY_TIMEOUT_SECONDS
    while True:
        page = await client.list()
        if ready(page) or time.monotonic() > deadline:
            return page
        await asyncio.sleep(0.2)

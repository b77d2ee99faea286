"""The synchronous `Client` against the running system of `tests.support.job_stack`."""

import tarfile
import time
from collections.abc import Callable
from decimal import Decimal

import pytest

from sdk import (
    JOB_STATUSES,
    ApiError,
    Balance,
    Client,
    Job,
    JobPage,
    Quote,
    QuoteList,
    WaitTimeout,
)
from storage import build_object_store, job_input_key

T4_JOB = {"image": "python:3.11-slim", "cmd": ["python", "train.py"]}
WAIT = {"timeout": 30, "poll_interval": 0.2}
VISIBILITY_TIMEOUT_SECONDS = 20

WRITE_OUTPUT = (
    "import os, pathlib;"
    " pathlib.Path(os.environ['CAC_OUTPUT_DIR'], 'answer.txt').write_text('42');"
    " print('the answer is 42')"
)


def cpu_job(code: str) -> dict:
    return {"image": "python:3.11-slim", "cmd": ["python3", "-c", code]}


@pytest.fixture
def client(stack):
    """Client of a new tenant with 10 credits."""
    with Client(stack.url, stack.token(stack.new_tenant())) as client:
        yield client


def list_until(client: Client, ready: Callable[[JobPage], bool], **filters) -> JobPage:
    """List jobs until `ready` accepts the page, because visibility is eventually consistent.

    After `VISIBILITY_TIMEOUT_SECONDS` it returns the last page, for the asserts to show.
    """
    deadline = time.monotonic() + VISIBILITY_TIMEOUT_SECONDS
    while True:
        page = client.list(**filters)
        if ready(page) or time.monotonic() > deadline:
            return page
        time.sleep(0.2)


def poll_until_held(client: Client, job_id: str) -> Job:
    """Poll the job until its budget is held, so that a cancel has an instance to tear down."""
    deadline = time.monotonic() + WAIT["timeout"]
    while True:
        job = client.get(job_id)
        if job.held or time.monotonic() > deadline:
            return job
        time.sleep(0.1)


def test_wait_returns_settled_succeeded_job(client):
    seen: list[str] = []

    submitted = client.submit(T4_JOB, {"gpuType": "T4"}, Decimal(5))
    job = client.wait(submitted.job_id, on_update=lambda update: seen.append(update.status), **WAIT)

    assert submitted.status == "SUBMITTED"
    assert submitted.replayed is False
    assert job.job_id == submitted.job_id
    assert job.status == "SUCCEEDED"
    assert job.provider == "fast"
    assert job.quote == Quote(
        provider="fast",
        region="sim-1",
        instance_type="sim-t4-x1",
        gpu_type="T4",
        gpu_count=1,
        spot=False,
        price_per_hour=Decimal("3.6"),
        start_seconds=None,
    )
    assert job.exit_code == 0
    assert job.max_budget == Decimal(5)
    assert job.cost == Decimal("0.001")
    assert job.captured == Decimal("0.001")
    assert job.released == Decimal("4.999")
    assert job.held == Decimal(0)
    assert [segment.billable_seconds for segment in job.segments] == [1]
    assert job.raw["cost"] == "0.001000"
    assert seen[-1] == "SUCCEEDED"
    positions = [JOB_STATUSES.index(status) for status in seen]
    assert positions == sorted(positions)


def test_submit_with_same_key_replays_job(client):
    first = client.submit(T4_JOB, {"gpuType": "T4"}, "5", idempotency_key="train-1")
    retry = client.submit(T4_JOB, {"gpuType": "T4"}, "5", idempotency_key="train-1")
    client.wait(first.job_id, **WAIT)

    assert first.replayed is False
    assert retry.replayed is True
    assert retry.job_id == first.job_id


def test_submit_zero_budget_raises_problem_naming_field(client):
    with pytest.raises(ApiError) as raised:
        client.submit(T4_JOB, {"gpuType": "T4"}, "0")

    error = raised.value
    assert error.status_code == 422
    assert error.type == "https://compute-as-credit.dev/problems/validation-error"
    assert error.detail == "maxBudget: must be greater than 0"
    assert [(field["field"], field["detail"]) for field in error.errors] == [
        ("maxBudget", "must be greater than 0")
    ]


def test_get_unknown_job_raises_not_found(client):
    with pytest.raises(ApiError) as raised:
        client.get("job-does-not-exist")

    assert raised.value.status_code == 404
    assert raised.value.detail == "job job-does-not-exist not found"


def test_wait_raises_timeout_for_provisioning_job(client):
    job_id = client.submit(T4_JOB, {"gpuType": "A100"}, "5").job_id

    with pytest.raises(WaitTimeout) as raised:
        client.wait(job_id, timeout=0.5, poll_interval=0.1)
    client.cancel(job_id)
    client.wait(job_id, **WAIT)

    assert raised.value.job.job_id == job_id
    assert raised.value.job.status in ("SUBMITTED", "QUEUED", "PROVISIONING")
    assert str(raised.value) == f"job {job_id} is still {raised.value.job.status} after 0.5 s"


def test_cancel_provisioning_job_ends_cancelled_and_settled(client):
    job_id = client.submit(T4_JOB, {"gpuType": "A100"}, "5").job_id
    provisioning = poll_until_held(client, job_id)

    accepted = client.cancel(job_id, reason="model converged")
    job = client.wait(job_id, **WAIT)

    assert provisioning.status == "PROVISIONING"
    assert provisioning.held == Decimal(5)
    assert accepted.job_id == job_id
    assert job.status == "CANCELLED"
    assert job.failure_reason == "model converged"
    assert job.provider == "slow"
    assert [segment.end_state for segment in job.segments] == ["TERMINATED"]
    assert job.cost == sum(segment.cost for segment in job.segments)
    assert job.held == Decimal(0)
    assert job.captured == job.cost
    assert job.released == Decimal(5) - job.cost


def test_cancel_settled_job_raises_conflict(client):
    job_id = client.submit(T4_JOB, {"gpuType": "T4"}, "5").job_id
    client.wait(job_id, **WAIT)

    with pytest.raises(ApiError) as raised:
        client.cancel(job_id)

    assert raised.value.status_code == 409
    assert raised.value.detail == f"job {job_id} has already ended SUCCEEDED"


def test_events_list_timeline_of_settled_job(client):
    job_id = client.submit(T4_JOB, {"gpuType": "T4"}, "5").job_id
    client.wait(job_id, **WAIT)

    events = client.events(job_id)

    assert [(event.type, event.status) for event in events] == [
        ("status", "SUBMITTED"),
        ("status", "QUEUED"),
        ("status", "PROVISIONING"),
        ("attempt", "PROVISIONING"),
        ("instance_launched", "PROVISIONING"),
        ("status", "RUNNING"),
        ("segment_billed", "RUNNING"),
        ("settled", "RUNNING"),
        ("status", "SUCCEEDED"),
    ]
    assert [event.sequence for event in events] == list(range(1, 10))
    assert events[4].provider == "fast"
    assert events[-3].amount == Decimal("0.001")
    assert events[-2].amount == Decimal("0.001")
    assert events[0].time <= events[-1].time


def test_list_and_iter_jobs_read_pages(client):
    succeeded = [client.submit(T4_JOB, {"gpuType": "T4"}, "5").job_id for _ in range(2)]
    failed = client.submit(T4_JOB, {"gpuType": "H100"}, "5").job_id
    for job_id in [*succeeded, failed]:
        client.wait(job_id, **WAIT)
    expected = {succeeded[0]: "SUCCEEDED", succeeded[1]: "SUCCEEDED", failed: "FAILED"}
    list_until(client, lambda page: {job.job_id: job.status for job in page.jobs} == expected)

    every_job = list(client.iter_jobs(page_size=1))
    failed_page = client.list(status="FAILED")
    running_page = client.list(status=["QUEUED", "RUNNING"])
    final_page = client.list(status=["SUCCEEDED", "FAILED"])
    first_page = client.list(limit=2)

    assert sorted(job.job_id for job in every_job) == sorted(expected)
    assert {job.job_id: job.status for job in every_job} == expected
    assert [job.job_id for job in failed_page.jobs] == [failed]
    assert failed_page.jobs[0].gpu_type == "H100"
    assert failed_page.next_cursor is None
    assert running_page.jobs == ()
    assert sorted(job.job_id for job in final_page.jobs) == sorted(expected)
    assert len(first_page.jobs) == 2
    assert first_page.next_cursor is not None
    assert {job.job_id: job.cost for job in every_job} == {
        succeeded[0]: Decimal("0.001"),
        succeeded[1]: Decimal("0.001"),
        failed: Decimal(0),
    }


def test_list_unknown_status_raises_problem(client):
    with pytest.raises(ApiError) as raised:
        client.list(status="DONE")

    assert raised.value.status_code == 422
    assert [field["field"] for field in raised.value.errors] == ["status"]


def test_upload_input_stores_bytes_and_files(client, stack, tmp_path):
    job_id = client.submit(T4_JOB, {"gpuType": "A100"}, "5").job_id
    store = build_object_store(stack.settings)
    input_file = tmp_path / "input.bin"
    input_file.write_bytes(bytes(range(256)) * 4096)

    from_bytes = client.upload_input(job_id, b"first input")
    stored_bytes = store.path(job_input_key(job_id)).read_bytes()
    client.upload_input(job_id, input_file)
    stored_file = store.path(job_input_key(job_id)).read_bytes()
    client.cancel(job_id)
    client.wait(job_id, **WAIT)

    assert from_bytes.input_uri == store.uri(job_input_key(job_id))
    assert stored_bytes == b"first input"
    assert stored_file == input_file.read_bytes()


def test_upload_input_from_missing_file_raises_before_request(client, tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        client.upload_input("job-any", tmp_path / "missing.bin")


def test_download_output_of_local_job_writes_archive(client, tmp_path):
    job_id = client.submit(cpu_job(WRITE_OUTPUT), {}, "1").job_id
    job = client.wait(job_id, **WAIT)

    archive = client.download_output(job_id, tmp_path / "output.tar.gz")

    assert job.status == "SUCCEEDED"
    assert job.provider == "local"
    assert archive == tmp_path / "output.tar.gz"
    with tarfile.open(archive) as contents:
        assert contents.getnames() == ["answer.txt"]
        assert contents.extractfile("answer.txt").read() == b"42"
    assert sorted(path.name for path in tmp_path.iterdir()) == ["output.tar.gz"]


DOUBLE_INPUT = (
    "import os, pathlib;"
    " text = pathlib.Path(os.environ['CAC_INPUT_DIR'], 'input').read_text();"
    " pathlib.Path(os.environ['CAC_OUTPUT_DIR'], 'doubled.txt').write_text(str(2 * int(text)))"
)


def test_job_waiting_for_input_reads_upload(client, tmp_path):
    job_id = client.submit(cpu_job(DOUBLE_INPUT), {}, "1", wait_for_input=True).job_id
    waiting = client.get(job_id)

    client.upload_input(job_id, b"21")
    job = client.wait(job_id, **WAIT)
    archive = client.download_output(job_id, tmp_path / "output.tar.gz")

    assert waiting.status == "SUBMITTED"
    assert job.status == "SUCCEEDED"
    with tarfile.open(archive) as contents:
        assert contents.extractfile("doubled.txt").read() == b"42"


def test_download_output_before_outputs_exist_raises_not_found(client, tmp_path):
    job_id = client.submit(T4_JOB, {"gpuType": "A100"}, "5").job_id

    with pytest.raises(ApiError) as raised:
        client.download_output(job_id, tmp_path / "output.tar.gz")
    client.cancel(job_id)
    client.wait(job_id, **WAIT)

    assert raised.value.status_code == 404
    assert list(tmp_path.iterdir()) == []


def test_logs_of_local_job_return_command_output(client):
    job_id = client.submit(cpu_job(WRITE_OUTPUT), {}, "1").job_id
    job = client.wait(job_id, **WAIT)
    header = f"==> attempt 1: local/{job.segments[0].instance_id} <==\n"

    logs = client.logs(job_id)
    tail = client.logs(job_id, max_bytes=5)

    assert logs == f"{header}the answer is 42\n"
    assert tail == f"{header}s 42\n"


def test_quotes_list_fast_provider_offer(client):
    quotes = client.quotes(gpu_type="T4", gpu_count=2)

    assert quotes == QuoteList(
        offers=(
            Quote(
                provider="fast",
                region="sim-1",
                instance_type="sim-t4-x2",
                gpu_type="T4",
                gpu_count=2,
                spot=False,
                price_per_hour=Decimal("7.2"),
                start_seconds=0,
            ),
        ),
        failed_providers=(),
    )


def test_balance_after_job_shows_spent(client):
    job_id = client.submit(T4_JOB, {"gpuType": "T4"}, "5").job_id
    client.wait(job_id, **WAIT)

    balance = client.balance()

    assert balance == Balance(
        tenant_id=balance.tenant_id,
        available=Decimal("9.999"),
        held=Decimal(0),
        spent=Decimal("0.001"),
    )
    assert balance.raw["available"] == "9.999000"


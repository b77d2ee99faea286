"""What the SDK sends and how it parses, where the running API cannot show it: the headers
of presigned requests, JSON encoding of decimals, and responses that the API does not send
today."""

import json
from decimal import Decimal

import httpx
import pytest

from sdk import AsyncClient, Client, Job

IO_URLS = {
    "uploadUrl": "http://store.test/jobs/job-1/input?signature=abc",
    "downloadUrl": "http://store.test/jobs/job-1/output.tar.gz?signature=def",
    "inputUri": "s3://bucket/jobs/job-1/input",
    "outputUri": "s3://bucket/jobs/job-1/output.tar.gz",
    "expiresAt": "2030-01-01T00:00:00+00:00",
}


class FakeApiAndStore:
    """Returns `IO_URLS` for `POST /v1/jobs/job-1/io` and stores what is PUT to the store."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []
        self.stored = b""

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if request.url.host == "api.test":
            return httpx.Response(200, json=IO_URLS)
        self.stored = request.content
        return httpx.Response(200)


def job_json(status: str, held: str | None) -> dict:
    return {"jobId": "job-1", "status": status, "held": held}


def test_upload_input_sends_file_without_bearer_token(tmp_path):
    api = FakeApiAndStore()
    source = tmp_path / "input.bin"
    source.write_bytes(b"x" * 3_000_000)

    with Client("http://api.test", "token-1", transport=httpx.MockTransport(api)) as client:
        urls = client.upload_input("job-1", source, mark_ready=False)

    presign, upload = api.requests
    assert urls.upload_url == IO_URLS["uploadUrl"]
    assert presign.headers["Authorization"] == "Bearer token-1"
    assert str(upload.url) == IO_URLS["uploadUrl"]
    assert upload.method == "PUT"
    assert "Authorization" not in upload.headers
    assert upload.headers["Content-Length"] == "3000000"
    assert "Transfer-Encoding" not in upload.headers
    assert api.stored == source.read_bytes()


async def test_async_upload_input_streams_file_with_length(tmp_path):
    api = FakeApiAndStore()
    source = tmp_path / "input.bin"
    source.write_bytes(bytes(range(256)) * 10_000)

    async with AsyncClient(
        "http://api.test", "token-1", transport=httpx.MockTransport(api)
    ) as client:
        await client.upload_input("job-1", source, mark_ready=False)

    upload = api.requests[1]
    assert "Authorization" not in upload.headers
    assert upload.headers["Content-Length"] == "2560000"
    assert "Transfer-Encoding" not in upload.headers
    assert api.stored == source.read_bytes()


def test_upload_input_rejects_text_before_any_request():
    api = FakeApiAndStore()

    with (
        Client("http://api.test", "token-1", transport=httpx.MockTransport(api)) as client,
        pytest.raises(TypeError, match="the input must be bytes or a file path, not int"),
    ):
        client.upload_input("job-1", 42)

    assert api.requests == []


def test_submit_sends_decimals_in_resource_hint_as_strings():
    requests: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(200, json={"jobId": "job-1", "status": "RUNNING"})

    with Client("http://api.test", "token-1", transport=httpx.MockTransport(api)) as client:
        submitted = client.submit(
            {"image": "alpine", "cmd": ["true"]},
            {"gpuType": "A100", "maxPricePerHour": Decimal("2.50")},
            1,
            "key-1",
            callback_url="https://agent.test/hook",
        )

    assert submitted.replayed is True
    assert requests[0].headers["Content-Type"] == "application/json"
    assert json.loads(requests[0].content) == {
        "agentSpec": {"image": "alpine", "cmd": ["true"]},
        "resourceHint": {"gpuType": "A100", "maxPricePerHour": "2.50"},
        "maxBudget": "1",
        "callbackUrl": "https://agent.test/hook",
    }


def test_submit_sends_budget_without_exponent():
    requests: list[httpx.Request] = []

    def api(request: httpx.Request) -> httpx.Response:
        requests.append(request)
        return httpx.Response(201, json={"jobId": "job-1", "status": "SUBMITTED"})

    with Client("http://api.test", "token-1", transport=httpx.MockTransport(api)) as client:
        client.submit({"image": "alpine", "cmd": ["true"]}, {}, Decimal("1E+3"))

    assert json.loads(requests[0].content)["maxBudget"] == "1000"


def test_wait_returns_first_final_job():
    responses = [
        job_json("RUNNING", "5.000000"),
        job_json("RUNNING", "5.000000"),
        job_json("SUCCEEDED", "0.000000"),
        job_json("SUCCEEDED", "0.000000"),
    ]
    seen: list[tuple[str, Decimal | None]] = []

    def api(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=responses.pop(0))

    with Client("http://api.test", "token-1", transport=httpx.MockTransport(api)) as client:
        job = client.wait(
            "job-1",
            poll_interval=0,
            on_update=lambda update: seen.append((update.status, update.held)),
        )

    assert job.status == "SUCCEEDED"
    assert job.held == Decimal(0)
    assert seen == [("RUNNING", Decimal(5)), ("SUCCEEDED", Decimal(0))]
    assert len(responses) == 1


def test_wait_rejects_negative_poll_interval():
    with (
        Client("http://api.test", "token-1", transport=httpx.MockTransport(None)) as client,
        pytest.raises(ValueError, match="poll_interval must be 0 or more seconds, got -1"),
    ):
        client.wait("job-1", poll_interval=-1)


@pytest.mark.parametrize(
    ("cost", "message"),
    [
        (0.1, "cost 0.1 in the API's response is not a decimal string"),
        ("ten", "cost 'ten' in the API's response is not a decimal string"),
        (True, "cost True in the API's response is not a decimal string"),
    ],
)
def test_job_from_json_rejects_inexact_amount(cost, message):
    with pytest.raises(ValueError) as raised:
        Job.from_json({"jobId": "job-1", "status": "RUNNING", "cost": cost})

    assert str(raised.value) == message


def test_job_from_json_keeps_unknown_fields_in_raw():
    data = {"jobId": "job-1", "status": "QUEUED", "priority": "high"}

    job = Job.from_json(data)

    assert job.raw == data
    assert job.cost is None
    assert job.segments == ()
    assert job.is_final is False

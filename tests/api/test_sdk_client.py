"""The synchronous SDK client against a scripted HTTP transport."""

import json
from datetime import UTC, datetime
from decimal import Decimal

import httpx
import pytest

from sdk import ApiError, Balance, Client, SubmittedJob


class ScriptedApi:
    """An httpx transport that records requests and returns scripted responses in order."""

    def __init__(self, *responses: httpx.Response) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self.responses.pop(0)


def client_for(api: ScriptedApi) -> Client:
    return Client("http://api.test", "token-1", transport=httpx.MockTransport(api))


def job(status: str) -> httpx.Response:
    return httpx.Response(200, json={"jobId": "job-1", "status": status})


def test_submit_sends_budget_as_exact_string():
    api = ScriptedApi(httpx.Response(201, json={"jobId": "job-1", "status": "SUBMITTED"}))

    with client_for(api) as client:
        result = client.submit(
            {"image": "alpine", "cmd": ["true"]},
            {"gpuType": "A100"},
            Decimal("123456789012.123456"),
            idempotency_key="key-1",
        )

    request = api.requests[0]
    assert result == SubmittedJob(job_id="job-1", status="SUBMITTED", replayed=False)
    assert request.method == "POST"
    assert request.url == "http://api.test/v1/jobs"
    assert request.headers["Authorization"] == "Bearer token-1"
    assert request.headers["Idempotency-Key"] == "key-1"
    assert json.loads(request.content) == {
        "agentSpec": {"image": "alpine", "cmd": ["true"]},
        "resourceHint": {"gpuType": "A100"},
        "maxBudget": "123456789012.123456",
    }


def test_submit_without_key_sends_no_idempotency_header():
    api = ScriptedApi(httpx.Response(201, json={"jobId": "job-1", "status": "SUBMITTED"}))

    with client_for(api) as client:
        client.submit({"image": "alpine", "cmd": ["true"]}, {}, "2.5")

    assert "Idempotency-Key" not in api.requests[0].headers


@pytest.mark.parametrize(
    ("budget", "error"), [("NaN", ValueError), ("abc", ValueError), (2.5, TypeError)]
)
def test_submit_rejects_invalid_budget(budget, error):
    with client_for(ScriptedApi()) as client, pytest.raises(error, match="max_budget"):
        client.submit({"image": "alpine", "cmd": ["true"]}, {}, budget)


def test_error_response_raises_api_error_with_detail():
    api = ScriptedApi(httpx.Response(404, json={"detail": "job job-9 not found"}))

    with client_for(api) as client, pytest.raises(ApiError) as raised:
        client.get("job-9")

    assert raised.value.status_code == 404
    assert raised.value.detail == "job job-9 not found"
    assert str(raised.value) == "HTTP 404: job job-9 not found"


def test_problem_response_raises_api_error_with_problem_details():
    problem = {
        "type": "https://compute-as-credit.dev/problems/validation-error",
        "title": "Invalid request",
        "status": 422,
        "detail": "maxBudget: must be greater than 0",
        "instance": "/v1/jobs",
        "errors": [
            {
                "in": "body",
                "field": "maxBudget",
                "detail": "must be greater than 0",
                "type": "value_error",
                "input": "0",
            }
        ],
    }
    api = ScriptedApi(
        httpx.Response(422, json=problem, headers={"Content-Type": "application/problem+json"})
    )

    with client_for(api) as client, pytest.raises(ApiError) as raised:
        client.submit({"image": "alpine", "cmd": ["true"]}, {}, "0")

    error = raised.value
    assert error.status_code == 422
    assert error.type == "https://compute-as-credit.dev/problems/validation-error"
    assert error.title == "Invalid request"
    assert error.detail == "maxBudget: must be greater than 0"
    assert error.instance == "/v1/jobs"
    assert error.errors == problem["errors"]
    assert str(error) == "HTTP 422: maxBudget: must be greater than 0"


def test_error_response_without_json_keeps_text():
    api = ScriptedApi(httpx.Response(502, text="Bad Gateway"))

    with client_for(api) as client, pytest.raises(ApiError) as raised:
        client.balance()

    assert raised.value.status_code == 502
    assert raised.value.detail == "Bad Gateway"
    assert raised.value.type == "about:blank"
    assert raised.value.title == "Bad Gateway"
    assert raised.value.errors == []


def test_wait_reports_each_status_change_until_final():
    api = ScriptedApi(job("QUEUED"), job("QUEUED"), job("RUNNING"), job("SUCCEEDED"))
    seen = []

    with client_for(api) as client:
        final = client.wait(
            "job-1",
            timeout=10,
            poll_interval=0,
            on_update=lambda update: seen.append(update.status),
        )

    assert final.job_id == "job-1"
    assert final.status == "SUCCEEDED"
    assert seen == ["QUEUED", "RUNNING", "SUCCEEDED"]
    assert len(api.requests) == 4


def test_wait_raises_timeout_for_job_that_stays_running():
    api = ScriptedApi(*[job("RUNNING") for _ in range(100)])

    with client_for(api) as client, pytest.raises(TimeoutError, match="job job-1 is still RUNNING"):
        client.wait("job-1", timeout=0.05, poll_interval=0.01)


def test_balance_reads_account():
    body = {"tenantId": "t", "available": "1.000000", "held": "0.000000", "spent": "0.000000"}
    api = ScriptedApi(httpx.Response(200, json=body))

    with client_for(api) as client:
        balance = client.balance()

    assert balance == Balance(
        tenant_id="t", available=Decimal("1.000000"), held=Decimal(0), spent=Decimal(0)
    )
    assert balance.raw == body

    assert api.requests[0].url == "http://api.test/v1/account"


def page(*entries: dict, next_cursor: str | None = None) -> httpx.Response:
    return httpx.Response(200, json={"entries": list(entries), "nextCursor": next_cursor})


def test_statement_sends_limit_and_cursor():
    api = ScriptedApi(page(next_cursor="c2"), page())

    with client_for(api) as client:
        first = client.statement()
        second = client.statement(limit=3, cursor="c2")

    assert first == {"entries": [], "nextCursor": "c2"}
    assert second == {"entries": [], "nextCursor": None}
    assert api.requests[0].url == "http://api.test/v1/account/transactions?limit=50"
    assert api.requests[1].url == "http://api.test/v1/account/transactions?limit=3&cursor=c2"


def test_grant_posts_amount_as_string_with_key():
    posted = {"transactionId": 7, "amount": "0.100000", "replayed": False}
    api = ScriptedApi(httpx.Response(201, json=posted))

    with client_for(api) as client:
        result = client.grant(
            "acme/eu",
            Decimal("0.1"),
            "promo",
            idempotency_key="grant-1",
            expires_at=datetime(2040, 1, 1, tzinfo=UTC),
        )

    request = api.requests[0]
    assert result == posted
    assert request.method == "POST"
    assert request.url == "http://api.test/v1/admin/tenants/acme%2Feu/grants"
    assert request.headers["Idempotency-Key"] == "grant-1"
    assert json.loads(request.content) == {
        "amount": "0.1",
        "reason": "promo",
        "expiresAt": "2040-01-01T00:00:00+00:00",
    }


def test_grant_without_expiry_sends_no_expires_at():
    api = ScriptedApi(httpx.Response(201, json={}))

    with client_for(api) as client:
        client.grant("acme", "5", "promo", idempotency_key="grant-2")

    assert json.loads(api.requests[0].content) == {"amount": "5", "reason": "promo"}


def test_grant_rejects_naive_expiry():
    with client_for(ScriptedApi()) as client, pytest.raises(ValueError, match="no timezone"):
        client.grant("acme", "5", "promo", idempotency_key="k", expires_at=datetime(2040, 1, 1))


@pytest.mark.parametrize(("amount", "error"), [("NaN", ValueError), (1.5, TypeError)])
def test_grant_rejects_invalid_amount(amount, error):
    with client_for(ScriptedApi()) as client, pytest.raises(error, match="amount"):
        client.grant("acme", amount, "promo", idempotency_key="k")


def test_refund_without_amount_sends_reason_only():
    api = ScriptedApi(httpx.Response(201, json={"amount": "3.000000"}))

    with client_for(api) as client:
        result = client.refund("job-1", "late start", idempotency_key="refund-1")

    request = api.requests[0]
    assert result == {"amount": "3.000000"}
    assert request.url == "http://api.test/v1/admin/jobs/job-1/refunds"
    assert request.headers["Idempotency-Key"] == "refund-1"
    assert json.loads(request.content) == {"reason": "late start"}


def test_refund_with_amount_sends_it_as_string():
    api = ScriptedApi(httpx.Response(201, json={}))

    with client_for(api) as client:
        client.refund("job-1", "late", idempotency_key="refund-2", amount="1.25")

    assert json.loads(api.requests[0].content) == {"reason": "late", "amount": "1.25"}

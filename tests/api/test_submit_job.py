"""`POST /v1/jobs` request validation and how a valid request becomes a workflow start."""

import json
import uuid

import pytest
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.service import RPCError, RPCStatusCode

from api.app import create_app
from api.idempotency import request_hash
from api.models import SubmitJobRequest
from tests.api.conftest import asgi_client, bearer
from workflows.job import JobWorkflow
from workflows.types import JobInput

WRITER = bearer("tenant-a", "jobs:write")
AGENT_SPEC = {"image": "python:3.11-slim", "cmd": ["python", "-c", "print(1)"]}


def body(**overrides) -> dict:
    request = {"agentSpec": AGENT_SPEC, "resourceHint": {"gpuType": "A100"}, "maxBudget": "5"}
    request.update(overrides)
    return request


async def post_raw(client, raw: str, headers: dict | None = None):
    """Post a body exactly as written, so that it can hold numbers and constants verbatim."""
    return await client.post(
        "/v1/jobs",
        content=raw.encode(),
        headers={**WRITER, "Content-Type": "application/json", **(headers or {})},
    )


def error_for(response, field: str) -> dict:
    """Return the one validation error whose field path ends with `field`."""
    errors = [
        error for error in response.json()["errors"] if error["field"].split(".")[-1] == field
    ]
    assert len(errors) == 1, response.json()
    return errors[0]


async def test_agent_spec_string_with_malformed_json_returns_422(api_client):
    response = await api_client.post("/v1/jobs", json=body(agentSpec='{"image": '), headers=WRITER)

    assert response.status_code == 422
    error = error_for(response, "agentSpec")
    assert (error["in"], error["field"]) == ("body", "agentSpec")
    assert error["detail"] == "the string is not valid JSON: Expecting value at line 1 column 11"


async def test_agent_spec_string_holding_a_list_returns_422(api_client):
    response = await api_client.post("/v1/jobs", json=body(agentSpec="[1, 2]"), headers=WRITER)

    assert response.status_code == 422
    assert error_for(response, "agentSpec")["detail"] == (
        "the string must contain a JSON object, not an array"
    )


async def test_agent_spec_without_image_returns_422(api_client):
    response = await api_client.post(
        "/v1/jobs", json=body(agentSpec={"cmd": ["true"]}), headers=WRITER
    )

    assert response.status_code == 422
    assert error_for(response, "image")["field"] == "agentSpec.image"


async def test_command_string_with_open_quote_returns_422(api_client):
    spec = {"image": "alpine", "cmd": "echo 'unterminated"}

    response = await api_client.post("/v1/jobs", json=body(agentSpec=spec), headers=WRITER)

    assert response.status_code == 422
    assert error_for(response, "cmd")["detail"] == (
        "the command string cannot be split into arguments: No closing quotation"
    )


async def test_empty_command_returns_422(api_client):
    spec = {"image": "alpine", "cmd": []}

    response = await api_client.post("/v1/jobs", json=body(agentSpec=spec), headers=WRITER)

    assert response.status_code == 422
    assert error_for(response, "cmd")["type"] == "too_short"


@pytest.mark.parametrize(
    ("raw_budget", "message"),
    [
        ("0.1234567", "must have at most 6 decimal places"),
        ('"0.1234567"', "must have at most 6 decimal places"),
        ("-1", "must be greater than 0"),
        ("0", "must be greater than 0"),
        ("NaN", "must be a finite number"),
        ("Infinity", "must be a finite number"),
        ('"NaN"', "'NaN' is not a decimal number such as \"12.5\""),
        ("1e400", "must be at most 1000000000000 credits"),
        ("1000000000000.000001", "must be at most 1000000000000 credits"),
        ('"12,5"', "'12,5' is not a decimal number such as \"12.5\""),
        ("true", "must be a decimal number of credits, as a JSON number or a string"),
        ("null", "must be a decimal number of credits, as a JSON number or a string"),
    ],
)
async def test_invalid_max_budget_returns_422(api_client, raw_budget, message):
    raw = json.dumps(body()).replace('"maxBudget": "5"', f'"maxBudget": {raw_budget}')

    response = await post_raw(api_client, raw)

    assert response.status_code == 422
    error = error_for(response, "maxBudget")
    assert (error["in"], error["field"]) == ("body", "maxBudget")
    assert error["detail"] == message


async def test_missing_max_budget_returns_422(api_client):
    request = body()
    del request["maxBudget"]

    response = await api_client.post("/v1/jobs", json=request, headers=WRITER)

    assert response.status_code == 422
    assert error_for(response, "maxBudget")["type"] == "missing"


@pytest.mark.parametrize(
    ("hint", "message"),
    [
        ({"gpuType": "A100", "gpuCount": 0}, "gpuCount must be at least 1 when gpuType is set"),
        ({"gpuCount": 2}, "gpuType is required when gpuCount is above 0"),
        ('{"gpuType": "A100", ', "the string is not valid JSON"),
    ],
)
async def test_inconsistent_resource_hint_returns_422(api_client, hint, message):
    response = await api_client.post("/v1/jobs", json=body(resourceHint=hint), headers=WRITER)

    assert response.status_code == 422
    assert message in error_for(response, "resourceHint")["detail"]


async def test_user_id_of_another_tenant_returns_403(api_client):
    response = await api_client.post("/v1/jobs", json=body(userId="tenant-b"), headers=WRITER)

    assert response.status_code == 403
    assert response.json() == {
        "type": "https://compute-as-credit.dev/problems/forbidden",
        "title": "Forbidden",
        "status": 403,
        "detail": "userId does not match the token subject",
        "instance": "/v1/jobs",
    }


@pytest.mark.parametrize("key", [b"x" * 256, "caf\u00e9".encode("latin-1"), b"tab\tkey"])
async def test_invalid_idempotency_key_returns_422(api_client, key):
    headers = {**WRITER, "Idempotency-Key": key}

    response = await api_client.post("/v1/jobs", json=body(), headers=headers)

    assert response.status_code == 422
    assert error_for(response, "Idempotency-Key")["in"] == "header"


async def test_submit_starts_job_workflow_with_exact_input(recording_client, recorder, settings):
    request = body(
        agentSpec=json.dumps({"image": "alpine", "cmd": "sh -c 'echo hi'", "env": {"A": "1"}}),
        resourceHint=json.dumps({"gpuType": "A100", "spotOk": True}),
        userId="tenant-a",
    )
    raw = json.dumps(request).replace('"maxBudget": "5"', '"maxBudget": 123456789012.123456')

    response = await post_raw(recording_client, raw)

    assert response.status_code == 201
    job_id = response.json()["jobId"]
    assert response.json() == {"jobId": job_id, "status": "SUBMITTED"}
    assert job_id.startswith("job-")
    assert len(recorder.started) == 1
    start = recorder.started[0]
    job_input: JobInput = start["arg"]
    assert start["workflow"] == JobWorkflow.run
    assert start["id"] == job_id
    assert start["task_queue"] == settings.task_queue
    assert start["id_reuse_policy"] == WorkflowIDReusePolicy.REJECT_DUPLICATE
    assert start["id_conflict_policy"] == WorkflowIDConflictPolicy.FAIL
    assert job_input.job_id == job_id
    assert job_input.tenant_id == "tenant-a"
    assert job_input.image == "alpine"
    assert job_input.command == ["sh", "-c", "echo hi"]
    assert job_input.env == {"A": "1"}
    assert job_input.gpu_type == "A100"
    assert job_input.gpu_count == 1
    assert job_input.spot_ok is True
    assert job_input.max_budget_micros == 123_456_789_012_123_456
    assert job_input.submitted_at != ""
    same_request = SubmitJobRequest.model_validate({**request, "maxBudget": "123456789012.123456"})
    assert start["memo"] == {
        "tenantId": "tenant-a",
        "requestHash": request_hash(same_request),
        "maxBudgetMicros": 123_456_789_012_123_456,
    }


async def test_submit_without_resource_hint_asks_for_cpu(recording_client, recorder):
    request = body()
    del request["resourceHint"]

    response = await recording_client.post("/v1/jobs", json=request, headers=WRITER)

    assert response.status_code == 201
    job_input: JobInput = recorder.started[0]["arg"]
    assert job_input.gpu_type is None
    assert job_input.gpu_count == 0
    assert job_input.spot_ok is False


async def test_submit_with_idempotency_key_derives_job_id(recording_client, recorder):
    headers = {**WRITER, "Idempotency-Key": "order-42"}

    response = await recording_client.post("/v1/jobs", json=body(), headers=headers)

    expected = f"job-{uuid.uuid5(uuid.NAMESPACE_URL, 'tenant-a' + chr(10) + 'order-42')}"
    assert response.status_code == 201
    assert response.json()["jobId"] == expected
    assert recorder.started[0]["id"] == expected


class UnavailableTemporalClient:
    async def start_workflow(self, *args, **options):
        raise RPCError("connection refused", RPCStatusCode.UNAVAILABLE, b"")


async def test_submit_with_temporal_down_returns_503(settings):
    app = create_app(settings, temporal_client=UnavailableTemporalClient())

    async with asgi_client(app) as client:
        response = await client.post("/v1/jobs", json=body(), headers=WRITER)

    assert response.status_code == 503
    assert response.json() == {
        "type": "https://compute-as-credit.dev/problems/temporal-unavailable",
        "title": "Temporal unavailable",
        "status": 503,
        "detail": "the Temporal service failed (UNAVAILABLE); retry later",
        "instance": "/v1/jobs",
    }


async def test_oversized_body_returns_413(api_client):
    spec = {"image": "python:3.11", "cmd": ["true"], "env": {"BIG": "x" * (300 * 1024)}}
    response = await api_client.post(
        "/v1/jobs", json=body(agentSpec=spec), headers=bearer("alice", "jobs:write")
    )

    assert response.status_code == 413
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json() == {
        "type": "https://compute-as-credit.dev/problems/body-too-large",
        "title": "Request body too large",
        "status": 413,
        "detail": "the request body is larger than 262144 bytes",
        "instance": "/v1/jobs",
    }


async def test_nul_in_command_returns_422(api_client):
    spec = {"image": "python:3.11", "cmd": ["tr\u0000ue"]}
    response = await api_client.post(
        "/v1/jobs", json=body(agentSpec=spec), headers=bearer("alice", "jobs:write")
    )

    assert response.status_code == 422
    assert "argument 0 must not contain a NUL character" in response.text


@pytest.mark.parametrize("budget", ["١٢", "1e400", "NaN"])
async def test_non_ascii_or_absurd_budget_returns_422(api_client, budget):
    response = await api_client.post(
        "/v1/jobs", json=body(maxBudget=budget), headers=bearer("alice", "jobs:write")
    )

    assert response.status_code == 422
    assert error_for(response, "maxBudget")

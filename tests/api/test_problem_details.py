"""Every error as an RFC 9457 problem, and malformed submit bodies as 422s, never 500s."""

import json
import logging

import pytest

from api.app import create_app
from api.deps import iter_api_routes, required_scopes
from tests.api.conftest import bearer

PROBLEMS = "https://compute-as-credit.dev/problems/"
WRITER = {**bearer("tenant-a", "jobs:write"), "Content-Type": "application/json"}
VALID_SPEC = '{"image": "alpine", "cmd": ["true"]}'


def strict_json(text: str):
    """Parse JSON as RFC 8259 defines it, without Python's NaN and Infinity extensions."""

    def reject(constant: str):
        raise ValueError(f"the response contains the non-standard JSON constant {constant}")

    return json.loads(text, parse_constant=reject)


def submit_body(agent_spec: str = VALID_SPEC, rest: str = '"maxBudget": "1"') -> bytes:
    return f'{{"agentSpec": {agent_spec}, {rest}}}'.encode()


async def submit_raw(client, raw: bytes, headers: dict | None = None):
    return await client.post("/v1/jobs", content=raw, headers=headers or WRITER)


# (body, field of the one error, error type, echoed input). Each body is sent as written, so
# that it can hold JSON's non-standard NaN and Infinity, which the API's parser reads.
MALFORMED_BODIES = [
    pytest.param(
        submit_body('{"image": "alpine", "cmd": ["true"], "env": {"A": NaN}}'),
        "agentSpec.env.A",
        "string_type",
        "NaN",
        id="nan-in-env",
    ),
    pytest.param(
        submit_body('{"image": "alpine", "cmd": [Infinity]}'),
        "agentSpec.cmd.0",
        "string_type",
        "Infinity",
        id="infinity-in-cmd",
    ),
    pytest.param(
        submit_body(
            '"{\\"image\\": \\"alpine\\", \\"cmd\\": [\\"true\\"], \\"env\\": {\\"A\\": NaN}}"'
        ),
        "agentSpec.env.A",
        "string_type",
        "NaN",
        id="nan-in-agent-spec-string",
    ),
    pytest.param(
        submit_body(
            rest='"resourceHint": {"gpuType": "A100", "gpuCount": -Infinity}, "maxBudget": 1'
        ),
        "resourceHint.gpuCount",
        "finite_number",
        "-Infinity",
        id="minus-infinity-gpu-count",
    ),
    pytest.param(
        submit_body(rest='"resourceHint": {"gpuType": "A100", "gpuCount": 1e400}, "maxBudget": 1'),
        "resourceHint.gpuCount",
        "less_than_equal",
        "1E+400",
        id="gpu-count-out-of-range",
    ),
    pytest.param(
        submit_body(
            rest='"resourceHint": {"gpuType": "A100", "gpuCount": 100000000000000000000000},'
            ' "maxBudget": 1'
        ),
        "resourceHint.gpuCount",
        "less_than_equal",
        100000000000000000000000,
        id="gpu-count-huge-integer",
    ),
    pytest.param(
        submit_body(rest='"resourceHint": {"maxPricePerHour": NaN}, "maxBudget": 1'),
        "resourceHint.maxPricePerHour",
        "value_error",
        "NaN",
        id="nan-price",
    ),
    pytest.param(
        submit_body(rest='"resourceHint": "{\\"maxPricePerHour\\": 1e999}", "maxBudget": 1'),
        "resourceHint.maxPricePerHour",
        "value_error",
        "Infinity",
        id="overflowing-price-in-hint-string",
    ),
    pytest.param(
        submit_body(rest='"maxBudget": 1e-400'),
        "maxBudget",
        "value_error",
        "1E-400",
        id="budget-below-one-micro-credit",
    ),
    pytest.param(
        submit_body('{"image": 5, "cmd": ["true"]}'),
        "agentSpec.image",
        "string_type",
        5,
        id="image-number",
    ),
    pytest.param(
        submit_body('{"image": "alpine", "cmd": {"a": 1}}'),
        "agentSpec.cmd",
        "list_type",
        {"a": 1},
        id="cmd-object",
    ),
    pytest.param(
        submit_body(rest='"resourceHint": {"spotOk": "maybe"}, "maxBudget": 1'),
        "resourceHint.spotOk",
        "bool_parsing",
        "maybe",
        id="spot-ok-word",
    ),
    pytest.param(submit_body("5"), "agentSpec", "model_attributes_type", 5, id="spec-number"),
    pytest.param(b"[]", "", "model_attributes_type", [], id="body-array"),
    pytest.param(b"null", "", "model_attributes_type", None, id="body-null"),
]


@pytest.mark.parametrize(("raw", "field", "error_type", "echoed"), MALFORMED_BODIES)
async def test_submit_with_invalid_value_returns_422_problem(
    api_client, raw, field, error_type, echoed
):
    response = await submit_raw(api_client, raw)

    assert response.status_code == 422
    assert response.headers["Content-Type"] == "application/problem+json"
    problem = strict_json(response.text)
    (error,) = problem["errors"]
    assert error["in"] == "body"
    assert error["field"] == field
    assert error["type"] == error_type
    assert error["input"] == echoed
    assert problem["detail"] == f"{field or 'body'}: {error['detail']}"


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (submit_body(rest='"maxBudget": 1,'), "Expecting property name enclosed in double quotes"),
        (b'{"agentSpec": ', "Expecting value"),
        (b"{'agentSpec': 1}", "Expecting property name enclosed in double quotes"),
        (b'{"maxBudget": 1} trailing', "Extra data"),
        (b"[" * 100_000, "it is nested too deeply"),
        (b'{"maxBudget": ' + b"9" * 5000 + b"}", "Exceeds the limit (4300 digits)"),
        (b'{"maxBudget": "\xff"}', "it is not UTF-8 text"),
    ],
    ids=[
        "trailing-comma",
        "truncated",
        "single-quotes",
        "trailing-text",
        "nested-too-deeply",
        "5000-digit-number",
        "not-utf-8",
    ],
)
async def test_submit_with_malformed_json_returns_422_problem(api_client, raw, reason):
    response = await submit_raw(api_client, raw)

    assert response.status_code == 422
    problem = strict_json(response.text)
    assert problem["type"] == f"{PROBLEMS}validation-error"
    assert problem["title"] == "Invalid request"
    assert problem["instance"] == "/v1/jobs"
    (error,) = problem["errors"]
    assert error["in"] == "body"
    assert error["field"] == ""
    assert error["type"] == "json_invalid"
    assert error["detail"].startswith("the body is not valid JSON: ")
    assert reason in error["detail"]
    assert "input" not in error


async def test_detail_names_first_three_fields(api_client):
    raw = submit_body(
        '{"image": 5, "cmd": {"a": 1}, "env": []}',
        '"resourceHint": {"spotOk": "maybe", "policy": 3}, "maxBudget": "x"',
    )

    response = await submit_raw(api_client, raw)

    problem = response.json()
    assert response.status_code == 422
    assert [error["field"] for error in problem["errors"]] == [
        "agentSpec.image",
        "agentSpec.cmd",
        "agentSpec.env",
        "resourceHint.spotOk",
        "resourceHint.policy",
        "maxBudget",
    ]
    assert problem["detail"] == (
        "agentSpec.image: Input should be a valid string; agentSpec.cmd: Input should be a"
        " valid list; agentSpec.env: Input should be a valid dictionary; and 3 more (see"
        " errors)"
    )


async def test_missing_field_echoes_no_input(api_client):
    response = await submit_raw(api_client, b'{"agentSpec": ' + VALID_SPEC.encode() + b"}")

    assert response.json()["errors"] == [
        {"in": "body", "field": "maxBudget", "detail": "Field required", "type": "missing"}
    ]


async def test_unknown_route_returns_404_problem(api_client):
    response = await api_client.get("/v2/nothing")

    assert response.status_code == 404
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json() == {
        "type": f"{PROBLEMS}not-found",
        "title": "Not Found",
        "status": 404,
        "detail": "Not Found",
        "instance": "/v2/nothing",
    }


async def test_wrong_method_returns_405_problem_with_allow(api_client):
    response = await api_client.delete("/v1/account")

    assert response.status_code == 405
    assert response.headers["Allow"] == "GET"
    assert response.json() == {
        "type": f"{PROBLEMS}method-not-allowed",
        "title": "Method Not Allowed",
        "status": 405,
        "detail": "Method Not Allowed",
        "instance": "/v1/account",
    }


async def test_unexpected_exception_returns_500_problem_logged_once(api_client, caplog):
    # The fixture's Temporal client raises AssertionError when the API calls it.
    caplog.set_level(logging.ERROR)

    response = await api_client.post(
        "/v1/jobs", content=submit_body(rest='"maxBudget": 1'), headers=WRITER
    )

    assert response.status_code == 500
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json() == {
        "type": f"{PROBLEMS}internal-error",
        "title": "Internal server error",
        "status": 500,
        "detail": "the server failed to handle the request; the error is logged with its path",
        "instance": "/v1/jobs",
    }
    errors = [record for record in caplog.records if record.levelno >= logging.ERROR]
    assert [record.getMessage() for record in errors] == [
        "POST /v1/jobs failed with an unexpected error"
    ]
    assert errors[0].exc_info[0] is AssertionError


def test_openapi_documents_error_responses_as_problems(settings):
    schema = create_app(settings).openapi()

    for path, path_item in schema["paths"].items():
        for method, operation in path_item.items():
            for status, response in operation["responses"].items():
                if status[0] not in "45" or (path, status) == ("/readyz", "503"):
                    continue
                expected = "ValidationProblem" if status == "422" else "Problem"
                assert response["content"] == {
                    "application/problem+json": {
                        "schema": {"$ref": f"#/components/schemas/{expected}"}
                    }
                }, f"{method.upper()} {path} {status}"
    assert "HTTPValidationError" not in schema["components"]["schemas"]


def test_openapi_documents_auth_problems_of_scoped_routes(settings):
    app = create_app(settings)
    schema = app.openapi()

    for route in iter_api_routes(app.routes):
        if not required_scopes(route):
            continue
        for method in route.methods:
            responses = schema["paths"][route.path_format][method.lower()]["responses"]
            assert {"401", "403", "500", "503"} <= set(responses), f"{method} {route.path_format}"

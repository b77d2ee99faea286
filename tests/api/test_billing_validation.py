"""Input validation of the admin billing routes: every bad value is a 422 naming its field.

The last tests send hand-written malformed requests to every billing route and check that
none of them fails with a 500.
"""

import json
import uuid

import pytest

from api.credits import parse_credits
from tests.api.conftest import bearer, new_tenant

ADMIN = bearer("operator", "billing:admin")
READER = bearer("tenant-a", "billing:read")

NOT_A_NUMBER = "must be a decimal number of credits, as a JSON number or a string"

# Raw JSON amounts and the message that rejects each, for both the grant and the refund route.
BAD_AMOUNTS = [
    ("0.1234567", "must have at most 6 decimal places"),
    ('"0.1234567"', "must have at most 6 decimal places"),
    ("1e-7", "must have at most 6 decimal places"),
    ("-1", "must be greater than 0"),
    ('"-0.5"', "must be greater than 0"),
    ("0", "must be greater than 0"),
    ('"0.000000"', "must be greater than 0"),
    ("NaN", "must be a finite number"),
    ("Infinity", "must be a finite number"),
    ("-Infinity", "must be a finite number"),
    ('"NaN"', "'NaN' is not a decimal number such as \"12.5\""),
    ('"Infinity"', "'Infinity' is not a decimal number such as \"12.5\""),
    ('"12,5"', "'12,5' is not a decimal number such as \"12.5\""),
    ('"1_000"', "'1_000' is not a decimal number such as \"12.5\""),
    ('" 1"', "' 1' is not a decimal number such as \"12.5\""),
    ('""', "'' is not a decimal number such as \"12.5\""),
    ("1e400", "must be at most 1000000000000 credits"),
    ('"1e13"', "must be at most 1000000000000 credits"),
    ("1000000000000.000001", "must be at most 1000000000000 credits"),
    ("100000000000000000000000000000", "must be at most 1000000000000 credits"),
    ("true", NOT_A_NUMBER),
    ("false", NOT_A_NUMBER),
    ("[1]", NOT_A_NUMBER),
    ('{"value": 1}', NOT_A_NUMBER),
]


def grant_url() -> str:
    return f"/v1/admin/tenants/{new_tenant()}/grants"


def refund_url() -> str:
    return f"/v1/admin/jobs/job-{uuid.uuid4().hex}/refunds"


async def post_raw(client, url: str, raw: str, headers: dict[str, str] | None = None):
    """Post a body exactly as written, so that it can hold numbers and constants verbatim."""
    return await client.post(
        url,
        content=raw.encode(),
        headers={
            **ADMIN,
            "Idempotency-Key": f"key-{uuid.uuid4().hex}",
            "Content-Type": "application/json",
            **(headers or {}),
        },
    )


def only_error(response) -> dict:
    (error,) = response.json()["errors"]
    return error


@pytest.mark.parametrize("url_factory", [grant_url, refund_url], ids=["grant", "refund"])
@pytest.mark.parametrize(("raw_amount", "message"), BAD_AMOUNTS)
async def test_invalid_amount_returns_422(billing_client, url_factory, raw_amount, message):
    raw = f'{{"amount": {raw_amount}, "reason": "test"}}'

    response = await post_raw(billing_client, url_factory(), raw)

    assert response.status_code == 422
    error = only_error(response)
    assert (error["in"], error["field"]) == ("body", "amount")
    assert error["detail"] == message


async def test_grant_with_null_amount_returns_422(billing_client):
    response = await post_raw(billing_client, grant_url(), '{"amount": null, "reason": "x"}')

    assert response.status_code == 422
    assert only_error(response)["detail"] == NOT_A_NUMBER


async def test_grant_without_amount_returns_422(billing_client):
    response = await post_raw(billing_client, grant_url(), '{"reason": "x"}')

    assert response.status_code == 422
    assert (only_error(response)["in"], only_error(response)["field"]) == ("body", "amount")
    assert only_error(response)["type"] == "missing"


def test_parse_credits_rejects_float():
    # Admin routes parse JSON fractions as Decimal; a float would already have lost digits.
    with pytest.raises(ValueError, match=NOT_A_NUMBER):
        parse_credits(0.1)


@pytest.mark.parametrize("url_factory", [grant_url, refund_url], ids=["grant", "refund"])
@pytest.mark.parametrize(
    ("reason", "error_type", "message"),
    [
        ("", "string_too_short", "String should have at least 1 character"),
        ("   ", "value_error", "must not be blank"),
        ("\n\t", "value_error", "must not be blank"),
        ("a\x00b", "value_error", "must not contain a NUL character"),
        ("x" * 1001, "string_too_long", "String should have at most 1000 characters"),
        (5, "string_type", "Input should be a valid string"),
        (None, "string_type", "Input should be a valid string"),
        (["late"], "string_type", "Input should be a valid string"),
    ],
)
async def test_invalid_reason_returns_422(billing_client, url_factory, reason, error_type, message):
    raw = json.dumps({"amount": "1", "reason": reason})

    response = await post_raw(billing_client, url_factory(), raw)

    assert response.status_code == 422
    error = only_error(response)
    assert (error["in"], error["field"]) == ("body", "reason")
    assert error["type"] == error_type
    assert error["detail"] == message


@pytest.mark.parametrize("url_factory", [grant_url, refund_url], ids=["grant", "refund"])
async def test_missing_reason_returns_422(billing_client, url_factory):
    response = await post_raw(billing_client, url_factory(), '{"amount": "1"}')

    assert response.status_code == 422
    assert (only_error(response)["in"], only_error(response)["field"]) == ("body", "reason")
    assert only_error(response)["type"] == "missing"


@pytest.mark.parametrize(
    ("expires_at", "message"),
    [
        ("2020-01-01T00:00:00Z", "'2020-01-01T00:00:00Z' is not in the future"),
        (
            "2040-01-01T00:00:00",
            "'2040-01-01T00:00:00' has no timezone; add one, such as 2030-01-01T00:00:00Z",
        ),
        ("2040-01-01", "'2040-01-01' has no timezone; add one, such as 2030-01-01T00:00:00Z"),
        (
            "next tuesday",
            "'next tuesday' is not an ISO 8601 date and time, such as 2030-01-01T00:00:00Z",
        ),
        ("9999-12-31T23:59:59-05:00", "'9999-12-31T23:59:59-05:00' is out of range"),
        (
            2000000000,
            "must be an ISO 8601 date and time string, such as 2030-01-01T00:00:00Z",
        ),
        (True, "must be an ISO 8601 date and time string, such as 2030-01-01T00:00:00Z"),
    ],
)
async def test_grant_with_invalid_expiry_returns_422(billing_client, expires_at, message):
    raw = json.dumps({"amount": "1", "reason": "x", "expiresAt": expires_at})

    response = await post_raw(billing_client, grant_url(), raw)

    assert response.status_code == 422
    error = only_error(response)
    assert (error["in"], error["field"]) == ("body", "expiresAt")
    assert error["detail"] == message


@pytest.mark.parametrize(
    ("url_factory", "raw"),
    [
        (grant_url, '{"amount": "1", "reason": "x", "expiresAT": "2040-01-01T00:00:00Z"}'),
        (refund_url, '{"reason": "x", "jobId": "job-2"}'),
    ],
    ids=["grant", "refund"],
)
async def test_unknown_field_returns_422(billing_client, url_factory, raw):
    response = await post_raw(billing_client, url_factory(), raw)

    assert response.status_code == 422
    assert only_error(response)["type"] == "extra_forbidden"


@pytest.mark.parametrize("job_id", ["a%00b", "a%1Fb", "x" * 256])
async def test_refund_of_invalid_job_id_returns_422(billing_client, job_id):
    response = await post_raw(billing_client, f"/v1/admin/jobs/{job_id}/refunds", '{"reason": "x"}')

    assert response.status_code == 422
    assert (only_error(response)["in"], only_error(response)["field"]) == ("path", "job_id")


# Hand-written malformed requests. Each must get a client error; an exception in the app
# fails the test, because the test client re-raises it.
MALFORMED_BODIES = [
    pytest.param(b"", id="empty"),
    pytest.param(b"{", id="truncated"),
    pytest.param(b"not json", id="not-json"),
    pytest.param(b"[]", id="array"),
    pytest.param(b"null", id="null"),
    pytest.param(b'"amount"', id="string"),
    pytest.param(b"\xff\xfe{}", id="invalid-utf8"),
    pytest.param(b"[" * 100_000 + b"]" * 100_000, id="deeply-nested"),
    pytest.param(b'{"amount": ' + b"9" * 5000 + b', "reason": "x"}', id="5000-digit-int"),
    pytest.param(b'{"amount": 1' + b"0" * 5000 + b'.5, "reason": "x"}', id="5000-digit-fraction"),
    pytest.param(b'{"amount": "1", "reason": "x", "reason": 5}', id="duplicate-field"),
    pytest.param(b'{"amount": {"$gt": 0}, "reason": {"x": 1}}', id="objects"),
]


@pytest.mark.parametrize("url_factory", [grant_url, refund_url], ids=["grant", "refund"])
@pytest.mark.parametrize("raw", MALFORMED_BODIES)
async def test_malformed_body_returns_client_error(billing_client, url_factory, raw):
    response = await billing_client.post(
        url_factory(),
        content=raw,
        headers={**ADMIN, "Idempotency-Key": "k", "Content-Type": "application/json"},
    )

    assert response.status_code in (400, 404, 422), response.text


@pytest.mark.parametrize("url_factory", [grant_url, refund_url], ids=["grant", "refund"])
@pytest.mark.parametrize(
    "content_type", ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data"]
)
async def test_body_of_other_content_type_returns_422(billing_client, url_factory, content_type):
    response = await billing_client.post(
        url_factory(),
        content=b'{"amount": "1", "reason": "x"}',
        headers={**ADMIN, "Idempotency-Key": "k", "Content-Type": content_type},
    )

    assert response.status_code == 422


@pytest.mark.parametrize(
    "query",
    [
        "limit=%00",
        "limit=%D9%A1",  # an Arabic-Indic digit one
        "limit=1&limit=2",
        "cursor=%FF%FE",
        "cursor=" + "A" * 10_000,
        "cursor=djE6MQ&cursor=djE6Mg",
        "unknown=1",
    ],
)
async def test_statement_with_odd_query_never_fails(billing_client, query):
    response = await billing_client.get(f"/v1/account/transactions?{query}", headers=READER)

    assert response.status_code in (200, 422), response.text


@pytest.mark.parametrize(
    "path",
    [
        "/v1/admin/tenants/%FF/grants",
        "/v1/admin/tenants/%2F/grants",
        "/v1/admin/tenants//grants",
        "/v1/admin/jobs/%FF%FE/refunds",
        "/v1/admin/jobs/../refunds",
    ],
)
async def test_admin_route_with_odd_path_never_fails(billing_client, path):
    response = await billing_client.post(
        path, json={"reason": "x"}, headers={**ADMIN, "Idempotency-Key": "k"}
    )

    assert response.status_code in (404, 405, 422), response.text


async def test_account_with_huge_token_returns_401(billing_client):
    response = await billing_client.get(
        "/v1/account", headers={"Authorization": "Bearer " + "a" * 20_000}
    )

    assert response.status_code == 401

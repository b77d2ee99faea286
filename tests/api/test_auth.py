"""Bearer-token authentication and scope checks; none of these requests reach Temporal."""

import time

import jwt
import pytest

from api.auth import LEEWAY_SECONDS, InvalidToken, Principal, decode_token, mint_token
from tests.api.conftest import SECRET, bearer

JOB_URL = "/v1/jobs/job-123"


def signed(claims: dict, secret: str = SECRET, algorithm: str = "HS256") -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm=algorithm)}"}


def valid_claims(**overrides) -> dict:
    claims = {"sub": "tenant-a", "scope": "jobs:read jobs:write", "exp": int(time.time()) + 600}
    claims.update(overrides)
    return claims


async def test_get_job_without_token_returns_401(api_client):
    response = await api_client.get(JOB_URL)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json() == {"detail": "missing bearer token in the Authorization header"}


async def test_basic_credentials_return_401(api_client):
    response = await api_client.get(JOB_URL, headers={"Authorization": "Basic dXNlcjpwYXNz"})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"


async def test_expired_token_returns_401(api_client):
    expired = valid_claims(exp=int(time.time()) - LEEWAY_SECONDS - 60)

    response = await api_client.get(JOB_URL, headers=signed(expired))

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.json() == {"detail": "invalid bearer token: Signature has expired"}


async def test_token_with_wrong_signature_returns_401(api_client):
    forged = signed(valid_claims(), secret="another-secret-of-the-same-good-length")

    response = await api_client.get(JOB_URL, headers=forged)

    assert response.status_code == 401
    assert response.json() == {"detail": "invalid bearer token: Signature verification failed"}


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "", "Bearer"])
async def test_malformed_token_returns_401(api_client, token):
    response = await api_client.get(JOB_URL, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


async def test_unsigned_alg_none_token_returns_401(api_client):
    unsigned = jwt.encode(valid_claims(), key=None, algorithm="none")

    response = await api_client.get(JOB_URL, headers={"Authorization": f"Bearer {unsigned}"})

    assert response.status_code == 401
    assert response.json() == {
        "detail": "invalid bearer token: The specified alg value is not allowed"
    }


async def test_token_with_other_hmac_algorithm_returns_401(api_client):
    response = await api_client.get(JOB_URL, headers=signed(valid_claims(), algorithm="HS512"))

    assert response.status_code == 401
    assert response.json() == {
        "detail": "invalid bearer token: The specified alg value is not allowed"
    }


@pytest.mark.parametrize("claim", ["sub", "exp"])
async def test_token_without_required_claim_returns_401(api_client, claim):
    claims = valid_claims()
    del claims[claim]

    response = await api_client.get(JOB_URL, headers=signed(claims))

    assert response.status_code == 401
    assert response.json() == {
        "detail": f'invalid bearer token: Token is missing the "{claim}" claim'
    }


async def test_token_with_empty_subject_returns_401(api_client):
    response = await api_client.get(JOB_URL, headers=signed(valid_claims(sub="")))

    assert response.status_code == 401
    assert response.json() == {"detail": "invalid bearer token: the token's sub claim is empty"}


async def test_submit_without_write_scope_returns_403(api_client):
    response = await api_client.post("/v1/jobs", json={}, headers=bearer("tenant-a", "jobs:read"))

    assert response.status_code == 403
    assert response.json() == {"detail": "the token lacks the required scope jobs:write"}
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", scope="jobs:write"'
    )


async def test_get_job_without_read_scope_returns_403(api_client):
    response = await api_client.get(JOB_URL, headers=bearer("tenant-a", "jobs:write"))

    assert response.status_code == 403
    assert response.json() == {"detail": "the token lacks the required scope jobs:read"}


async def test_account_with_jobs_read_scope_returns_403(api_client):
    response = await api_client.get("/v1/account", headers=bearer("tenant-a", "jobs:read"))

    assert response.status_code == 403
    assert response.json() == {"detail": "the token lacks the required scope billing:read"}


def test_decode_token_returns_subject_and_scopes():
    token = mint_token(SECRET, subject="tenant-a", scopes=["jobs:read", "billing:read"])

    principal = decode_token(token, SECRET)

    assert principal == Principal(
        subject="tenant-a", scopes=frozenset({"jobs:read", "billing:read"})
    )


def test_decode_token_accepts_expiry_within_leeway():
    token = jwt.encode(valid_claims(exp=int(time.time()) - LEEWAY_SECONDS + 5), SECRET)

    assert decode_token(token, SECRET).subject == "tenant-a"


def test_decode_token_without_scope_claim_grants_no_scope():
    token = jwt.encode({"sub": "tenant-a", "exp": int(time.time()) + 60}, SECRET)

    assert decode_token(token, SECRET).scopes == frozenset()


def test_decode_token_rejects_scope_list():
    token = jwt.encode(valid_claims(scope=["jobs:read"]), SECRET)

    with pytest.raises(InvalidToken, match="space-separated string"):
        decode_token(token, SECRET)


def test_mint_token_sets_expiry_from_ttl():
    before = int(time.time())

    claims = jwt.decode(
        mint_token(SECRET, subject="tenant-a", scopes=[], ttl_seconds=120),
        SECRET,
        algorithms=["HS256"],
    )

    assert before + 120 <= claims["exp"] <= int(time.time()) + 120
    assert claims["scope"] == ""


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"subject": "", "scopes": []}, "subject must not be empty"),
        ({"subject": "a", "scopes": ["jobs:read jobs:write"]}, "invalid scope"),
        ({"subject": "a", "scopes": [""]}, "invalid scope"),
        ({"subject": "a", "scopes": [], "ttl_seconds": 0}, "ttl_seconds must be positive"),
    ],
)
def test_mint_token_rejects_invalid_input(options, message):
    with pytest.raises(ValueError, match=message):
        mint_token(SECRET, **options)

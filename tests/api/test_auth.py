"""HS256 bearer tokens, scope checks and the token settings; no request here reaches Temporal.

Tokens signed by an identity provider and verified against its JWKS are in
test_auth_matrix.py.
"""

import time

import jwt
import pytest

from api.auth import (
    LEEWAY_SECONDS,
    InvalidToken,
    Principal,
    TokenVerifier,
    decode_token,
    mint_token,
)
from config import Settings
from tests.api.conftest import SECRET, bearer

JOB_URL = "/v1/jobs/job-123"
PROBLEMS = "https://compute-as-credit.dev/problems/"


def signed(claims: dict, secret: str = SECRET, algorithm: str = "HS256") -> dict[str, str]:
    return {"Authorization": f"Bearer {jwt.encode(claims, secret, algorithm=algorithm)}"}


def valid_claims(**overrides) -> dict:
    claims = {"sub": "tenant-a", "scope": "jobs:read jobs:write", "exp": int(time.time()) + 600}
    claims.update(overrides)
    return claims


def invalid_token(detail: str, instance: str = JOB_URL) -> dict:
    """The problem body of a 401 for an invalid token."""
    return {
        "type": f"{PROBLEMS}invalid-token",
        "title": "Invalid bearer token",
        "status": 401,
        "detail": f"invalid bearer token: {detail}",
        "instance": instance,
    }


def insufficient_scope(scope: str, instance: str) -> dict:
    """The problem body of a 403 for a token without `scope`."""
    return {
        "type": f"{PROBLEMS}insufficient-scope",
        "title": "Insufficient scope",
        "status": 403,
        "detail": f"the token lacks the required scope {scope}",
        "instance": instance,
    }


async def test_get_job_without_token_returns_401(api_client):
    response = await api_client.get(JOB_URL)

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json() == {
        "type": f"{PROBLEMS}missing-token",
        "title": "Authentication required",
        "status": 401,
        "detail": "missing bearer token in the Authorization header",
        "instance": JOB_URL,
    }


async def test_basic_credentials_return_401(api_client):
    response = await api_client.get(JOB_URL, headers={"Authorization": "Basic dXNlcjpwYXNz"})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == "Bearer"
    assert response.json()["type"] == f"{PROBLEMS}missing-token"


async def test_expired_token_returns_401(api_client):
    expired = valid_claims(exp=int(time.time()) - LEEWAY_SECONDS - 60)

    response = await api_client.get(JOB_URL, headers=signed(expired))

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json() == invalid_token("Signature has expired")


async def test_token_with_wrong_signature_returns_401(api_client):
    forged = signed(valid_claims(), secret="another-secret-of-the-same-good-length")

    response = await api_client.get(JOB_URL, headers=forged)

    assert response.status_code == 401
    assert response.json() == invalid_token("Signature verification failed")


@pytest.mark.parametrize("token", ["not-a-jwt", "a.b.c", "", "Bearer"])
async def test_malformed_token_returns_401(api_client, token):
    response = await api_client.get(JOB_URL, headers={"Authorization": f"Bearer {token}"})

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert response.json()["status"] == 401


async def test_unsigned_alg_none_token_returns_401(api_client):
    unsigned = jwt.encode(valid_claims(), key=None, algorithm="none")

    response = await api_client.get(JOB_URL, headers={"Authorization": f"Bearer {unsigned}"})

    assert response.status_code == 401
    assert response.json() == invalid_token("the alg 'none' is not accepted; accepted: HS256")


async def test_token_with_other_hmac_algorithm_returns_401(api_client):
    response = await api_client.get(JOB_URL, headers=signed(valid_claims(), algorithm="HS512"))

    assert response.status_code == 401
    assert response.json() == invalid_token("the alg 'HS512' is not accepted; accepted: HS256")


@pytest.mark.parametrize("claim", ["sub", "exp"])
async def test_token_without_required_claim_returns_401(api_client, claim):
    claims = valid_claims()
    del claims[claim]

    response = await api_client.get(JOB_URL, headers=signed(claims))

    assert response.status_code == 401
    assert response.json() == invalid_token(f'Token is missing the "{claim}" claim')


async def test_token_with_empty_subject_returns_401(api_client):
    response = await api_client.get(JOB_URL, headers=signed(valid_claims(sub="")))

    assert response.status_code == 401
    assert response.json() == invalid_token("the token's sub claim is empty")


async def test_token_with_audience_returns_401_when_none_configured(api_client):
    response = await api_client.get(JOB_URL, headers=signed(valid_claims(aud="other-api")))

    assert response.status_code == 401
    assert response.json() == invalid_token("Invalid audience")


async def test_submit_without_write_scope_returns_403(api_client):
    response = await api_client.post("/v1/jobs", json={}, headers=bearer("tenant-a", "jobs:read"))

    assert response.status_code == 403
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json() == insufficient_scope("jobs:write", "/v1/jobs")
    assert response.headers["WWW-Authenticate"] == (
        'Bearer error="insufficient_scope", scope="jobs:write"'
    )


async def test_get_job_without_read_scope_returns_403(api_client):
    response = await api_client.get(JOB_URL, headers=bearer("tenant-a", "jobs:write"))

    assert response.status_code == 403
    assert response.json() == insufficient_scope("jobs:read", JOB_URL)


async def test_account_with_jobs_read_scope_returns_403(api_client):
    response = await api_client.get("/v1/account", headers=bearer("tenant-a", "jobs:read"))

    assert response.status_code == 403
    assert response.json() == insufficient_scope("billing:read", "/v1/account")


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
    assert "iss" not in claims
    assert "aud" not in claims


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


def hmac_verifier(**options) -> TokenVerifier:
    return TokenVerifier(secret=SECRET, algorithms=["HS256"], **options)


async def test_verifier_accepts_minted_token_with_issuer_and_audience():
    verifier = hmac_verifier(issuer="https://issuer.test/", audience="cac-api")
    token = mint_token(
        SECRET,
        subject="tenant-a",
        scopes=["jobs:read"],
        issuer="https://issuer.test/",
        audience="cac-api",
    )

    principal = await verifier.verify(token)

    assert principal == Principal(subject="tenant-a", scopes=frozenset({"jobs:read"}))


async def test_verifier_accepts_audience_in_list():
    verifier = hmac_verifier(audience="cac-api")
    token = jwt.encode(valid_claims(aud=["other-api", "cac-api"]), SECRET)

    assert (await verifier.verify(token)).subject == "tenant-a"


@pytest.mark.parametrize(
    ("claims", "message"),
    [
        (valid_claims(), 'Token is missing the "iss" claim'),
        (valid_claims(iss="https://issuer.test/", aud="cac-api-staging"), "Audience doesn't match"),
        (valid_claims(iss="https://issuer.test", aud="cac-api"), "Invalid issuer"),
        (valid_claims(iss="https://issuer.test/"), 'Token is missing the "aud" claim'),
    ],
)
async def test_verifier_rejects_wrong_issuer_or_audience(claims, message):
    verifier = hmac_verifier(issuer="https://issuer.test/", audience="cac-api")

    with pytest.raises(InvalidToken) as raised:
        await verifier.verify(jwt.encode(claims, SECRET))

    assert str(raised.value) == message


async def test_verifier_applies_configured_leeway():
    verifier = hmac_verifier(leeway_seconds=0)
    token = jwt.encode(valid_claims(exp=int(time.time()) - 5), SECRET)

    with pytest.raises(InvalidToken, match="Signature has expired"):
        await verifier.verify(token)


def test_verifier_requires_key_set_for_asymmetric_algorithms():
    with pytest.raises(ValueError, match="asymmetric algorithms need a key set"):
        TokenVerifier(secret=SECRET, algorithms=["HS256", "RS256"])


def test_settings_split_algorithm_list():
    settings = Settings(jwt_algorithms="HS256, ES256", jwks_url="https://idp.test/jwks.json")

    assert settings.jwt_algorithms == ["HS256", "ES256"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"jwt_algorithms": "none"}, "unsupported JWT algorithm 'none'"),
        ({"jwt_algorithms": "HS256,HS1"}, "unsupported JWT algorithm 'HS1'"),
        ({"jwt_algorithms": ""}, "must name at least one algorithm"),
        ({"jwt_algorithms": "RS256"}, "CAC_JWT_ALGORITHMS lists RS256, which need CAC_JWKS_URL"),
        (
            {"jwt_algorithms": "RS256", "jwks_url": "file:///etc/keys.json"},
            "CAC_JWKS_URL 'file:///etc/keys.json' must be an http or https URL",
        ),
    ],
)
def test_settings_reject_invalid_token_settings(options, message):
    with pytest.raises(ValueError, match=message):
        Settings(**options)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "CAC_JWT_SECRET is the dev secret"),
        ({"jwt_secret": "short"}, "CAC_JWT_SECRET has 5 characters; use at least 32"),
        (
            {
                "jwt_algorithms": "RS256",
                "jwks_url": "http://idp.test/jwks.json",
                "jwt_audience": "cac-api",
            },
            "CAC_JWKS_URL 'http://idp.test/jwks.json' must use https",
        ),
        (
            {"jwt_algorithms": "ES256", "jwks_url": "https://idp.test/jwks.json"},
            "CAC_JWT_AUDIENCE is not set",
        ),
        (
            {
                "jwt_algorithms": "HS256,RS256",
                "jwks_url": "https://idp.test/jwks.json",
                "jwt_audience": "cac-api",
            },
            "CAC_JWT_SECRET is the dev secret",
        ),
        (
            {
                "jwt_algorithms": "RS256",
                "jwks_url": "https://idp.test/jwks.json",
                "jwt_audience": "cac-api",
                "storage": "s3",
                "s3_bucket": "jobs",
            },
            "CAC_JWT_SECRET is the dev secret",
        ),
    ],
)
def test_production_safety_rejects_unsafe_token_settings(options, message):
    settings = Settings(**options)

    with pytest.raises(ValueError, match=message):
        settings.check_production_safety()


@pytest.mark.parametrize(
    "options",
    [
        {"jwt_secret": SECRET},
        {
            "jwt_secret": SECRET,
            "jwt_algorithms": "RS256",
            "jwks_url": "https://idp.test/jwks.json",
            "jwt_audience": "cac-api",
        },
        # A key set on this machine may be served over plain http.
        {
            "jwt_secret": SECRET,
            "jwt_algorithms": "ES256",
            "jwks_url": "http://127.0.0.1:8081/jwks.json",
            "jwt_audience": "cac-api",
        },
        {"dev_mode": True, "jwt_algorithms": "RS256", "jwks_url": "http://idp.test/jwks.json"},
    ],
)
def test_production_safety_accepts_safe_token_settings(options):
    settings = Settings(**options)

    settings.check_production_safety()

"""Tokens of an identity provider, verified against its JWKS, and what each kind of bad token gets.

The provider's key set is served by a local HTTP server on 127.0.0.1, with an RSA key (RS256)
and an EC key (ES256) generated for the test run. The API accepts HS256, RS256 and ES256 and
requires the provider's issuer and this API's audience.
"""

import base64
import hashlib
import hmac
import json
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Self

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from temporalio.testing import WorkflowEnvironment

import ledger
from api.app import create_app
from api.jwks import JwksKeySet, JwksUnavailable, UnknownKeyId
from config import Settings
from tests.api.conftest import SECRET, asgi_client, new_tenant
from tests.conftest import start_time_skipping_env

ISSUER = "https://idp.test/"
AUDIENCE = "compute-as-credit"
PROBLEMS = "https://compute-as-credit.dev/problems/"
ACCOUNT_URL = "/v1/account"
CREDIT = 1_000_000

RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)
EC_KEY = ec.generate_private_key(ec.SECP256R1())
OTHER_RSA_KEY = rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(private_key, kid: str, algorithm: str) -> dict:
    if isinstance(private_key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    else:
        jwk = ECAlgorithm.to_jwk(private_key.public_key(), as_dict=True)
    return {**jwk, "kid": kid, "alg": algorithm, "use": "sig"}


KEY_SET = {"keys": [public_jwk(RSA_KEY, "rsa-1", "RS256"), public_jwk(EC_KEY, "ec-1", "ES256")]}


class JwksServer:
    """A JWKS endpoint on 127.0.0.1 that counts its fetches and can be made to fail."""

    def __init__(self, document: dict) -> None:
        self.document = document
        self.failure: str | None = None
        """None to serve the document, "status" for HTTP 500, "not-json" for a text body."""
        self.fetches = 0

        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                server.fetches += 1
                if server.failure == "status":
                    self.send_error(500, "key store down")
                    return
                if server.failure == "not-json":
                    body, content_type = b"<html>maintenance</html>", "text/html"
                else:
                    body, content_type = json.dumps(server.document).encode(), "application/json"
                self.send_response(200)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self._http = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self._http.server_port}/jwks.json"
        self._thread = threading.Thread(target=self._http.serve_forever, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join()


def closed_port_url() -> str:
    """URL of a port on 127.0.0.1 that nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"http://127.0.0.1:{port}/jwks.json"


def claims(subject: str = "tenant-a", **overrides) -> dict:
    now = int(time.time())
    values = {
        "sub": subject,
        "scope": "jobs:read jobs:write billing:read",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": now,
        "exp": now + 600,
    }
    values.update(overrides)
    return {name: value for name, value in values.items() if value is not None}


def rs256(payload: dict, key=RSA_KEY, kid: str | None = "rsa-1", algorithm="RS256") -> str:
    headers = {"kid": kid} if kid is not None else {}
    return jwt.encode(payload, key, algorithm=algorithm, headers=headers)


def es256(payload: dict, kid: str = "ec-1") -> str:
    return jwt.encode(payload, EC_KEY, algorithm="ES256", headers={"kid": kid})


def hs256_with_raw_key(payload: dict, key: bytes) -> str:
    """Sign HS256 by hand, because PyJWT refuses a PEM public key as an HMAC secret."""

    def encode(part: bytes) -> bytes:
        return base64.urlsafe_b64encode(part).rstrip(b"=")

    header = encode(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    body = encode(json.dumps(payload).encode())
    signature = encode(hmac.new(key, header + b"." + body, hashlib.sha256).digest())
    return (header + b"." + body + b"." + signature).decode()


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def idp_settings(tmp_path, jwks_url: str, **overrides) -> Settings:
    options = {
        "jwt_secret": SECRET,
        "jwt_algorithms": ["HS256", "RS256", "ES256"],
        "jwks_url": jwks_url,
        "jwt_issuer": ISSUER,
        "jwt_audience": AUDIENCE,
        "data_dir": tmp_path,
        "task_queue": f"auth-matrix-{uuid.uuid4().hex}",
    }
    options.update(overrides)
    return Settings(**options)


@pytest.fixture(scope="module")
def jwks_server() -> Iterator[JwksServer]:
    with JwksServer(KEY_SET) as server:
        yield server


@pytest.fixture(scope="module")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A test server of this module's own; no worker runs, so started jobs stay RUNNING."""
    env = await start_time_skipping_env()
    yield env
    await env.shutdown()


@pytest.fixture(scope="module")
async def client(
    jwks_server, time_env, billing_pg_url, tmp_path_factory
) -> AsyncIterator[httpx.AsyncClient]:
    """Client of an app that trusts the local identity provider, started on the billing ledger."""
    settings = idp_settings(
        tmp_path_factory.mktemp("auth-matrix"), jwks_server.url, DATABASE_URL=billing_pg_url
    )
    app = create_app(settings, temporal_client=time_env.client)
    async with app.router.lifespan_context(app), asgi_client(app) as http:
        yield http


def invalid_token(detail: str) -> dict:
    return {
        "type": f"{PROBLEMS}invalid-token",
        "title": "Invalid bearer token",
        "status": 401,
        "detail": f"invalid bearer token: {detail}",
        "instance": ACCOUNT_URL,
    }


ACCEPTED = "accepted: HS256, RS256, ES256"

BAD_TOKENS: list[tuple[str, Callable[[], str], str]] = [
    (
        "alg-none",
        lambda: jwt.encode(claims(), None, algorithm="none"),
        f"the alg 'none' is not accepted; {ACCEPTED}",
    ),
    (
        "alg-none-naming-a-key",
        lambda: jwt.encode(claims(), None, algorithm="none", headers={"kid": "rsa-1"}),
        f"the alg 'none' is not accepted; {ACCEPTED}",
    ),
    (
        "algorithm-not-configured",
        lambda: rs256(claims(), algorithm="RS512"),
        f"the alg 'RS512' is not accepted; {ACCEPTED}",
    ),
    (
        "algorithm-other-than-the-keys",
        lambda: jwt.encode(claims(), EC_KEY, algorithm="ES256", headers={"kid": "rsa-1"}),
        "Token algorithm 'ES256' does not match the key's algorithm 'RS256'",
    ),
    (
        "hmac-signed-with-the-public-key",
        lambda: hs256_with_raw_key(
            claims(),
            RSA_KEY.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            ),
        ),
        "Signature verification failed",
    ),
    (
        "hmac-signed-with-another-secret",
        lambda: jwt.encode(claims(), "another-secret-that-is-long-enough-for-hs256"),
        "Signature verification failed",
    ),
    (
        "signed-with-another-key",
        lambda: rs256(claims(), key=OTHER_RSA_KEY),
        "Signature verification failed",
    ),
    ("missing-exp", lambda: rs256(claims(exp=None)), 'Token is missing the "exp" claim'),
    ("missing-sub", lambda: es256(claims(sub=None)), 'Token is missing the "sub" claim'),
    ("empty-sub", lambda: es256(claims(subject="")), "the token's sub claim is empty"),
    (
        "expired",
        lambda: rs256(claims(exp=int(time.time()) - 3600)),
        "Signature has expired",
    ),
    (
        "not-yet-valid",
        lambda: rs256(claims(nbf=int(time.time()) + 3600)),
        "The token is not yet valid (nbf)",
    ),
    ("wrong-issuer", lambda: rs256(claims(iss="https://evil.test/")), "Invalid issuer"),
    ("missing-issuer", lambda: es256(claims(iss=None)), 'Token is missing the "iss" claim'),
    (
        "hmac-without-issuer",
        lambda: jwt.encode(claims(iss=None), SECRET),
        'Token is missing the "iss" claim',
    ),
    ("wrong-audience", lambda: rs256(claims(aud="another-api")), "Audience doesn't match"),
    ("missing-audience", lambda: es256(claims(aud=None)), 'Token is missing the "aud" claim'),
    (
        "unknown-kid",
        lambda: rs256(claims(), kid="rsa-unknown"),
        "no key with kid 'rsa-unknown' in the key set",
    ),
    (
        "missing-kid",
        lambda: rs256(claims(), kid=None),
        "the token header has no kid naming the key that signed it",
    ),
]


@pytest.mark.parametrize(
    ("make_token", "detail"),
    [(make_token, detail) for _, make_token, detail in BAD_TOKENS],
    ids=[name for name, _, _ in BAD_TOKENS],
)
async def test_bad_token_returns_401_problem(client, make_token, detail):
    response = await client.get(ACCOUNT_URL, headers=auth(make_token()))

    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"] == 'Bearer error="invalid_token"'
    assert response.headers["Content-Type"] == "application/problem+json"
    assert response.json() == invalid_token(detail)


@pytest.mark.parametrize(
    "make_token",
    [
        lambda tenant: rs256(claims(tenant)),
        lambda tenant: es256(claims(tenant)),
        lambda tenant: jwt.encode(claims(tenant), SECRET),
        # An audience list that contains this API's audience.
        lambda tenant: rs256(claims(tenant, aud=["another-api", AUDIENCE])),
    ],
    ids=["rs256", "es256", "hs256", "audience-list"],
)
async def test_valid_token_reads_account(client, make_token):
    tenant = new_tenant()

    response = await client.get(ACCOUNT_URL, headers=auth(make_token(tenant)))

    assert response.status_code == 200
    assert response.json() == {
        "tenantId": tenant,
        "available": "0.000000",
        "held": "0.000000",
        "spent": "0.000000",
    }


async def test_other_tenant_reads_own_balance(client, billing_engine):
    owner, stranger = new_tenant(), new_tenant()
    ledger.grant(billing_engine, tenant_id=owner, amount_micros=10 * CREDIT, key="grant-1")

    as_owner = await client.get(ACCOUNT_URL, headers=auth(rs256(claims(owner))))
    as_stranger = await client.get(ACCOUNT_URL, headers=auth(es256(claims(stranger))))

    assert as_owner.json()["tenantId"] == owner
    assert as_owner.json()["available"] == "10.000000"
    assert as_stranger.json()["tenantId"] == stranger
    assert as_stranger.json()["available"] == "0.000000"


async def test_other_tenants_job_returns_404(client, time_env):
    owner, stranger = new_tenant(), new_tenant()
    job_request = {
        "agentSpec": {"image": "python:3.11-slim", "cmd": ["true"]},
        "maxBudget": "1",
    }
    submitted = await client.post(
        "/v1/jobs", json=job_request, headers=auth(rs256(claims(owner)))
    )
    job_id = submitted.json()["jobId"]

    as_stranger = await client.get(f"/v1/jobs/{job_id}", headers=auth(es256(claims(stranger))))
    unknown = await client.get("/v1/jobs/job-unknown", headers=auth(es256(claims(stranger))))
    # No worker runs here, so the owner reads the job once it is closed.
    await time_env.client.get_workflow_handle(job_id).terminate(reason="test over")
    as_owner = await client.get(f"/v1/jobs/{job_id}", headers=auth(rs256(claims(owner))))

    assert submitted.status_code == 201
    assert as_stranger.status_code == 404
    assert as_stranger.json() == {
        "type": f"{PROBLEMS}not-found",
        "title": "Not Found",
        "status": 404,
        "detail": f"job {job_id} not found",
        "instance": f"/v1/jobs/{job_id}",
    }
    assert unknown.status_code == 404
    assert unknown.json()["detail"] == "job job-unknown not found"
    assert as_owner.status_code == 200
    assert as_owner.json()["jobId"] == job_id


@pytest.mark.parametrize("failure", ["status", "not-json", "unreachable"])
async def test_unavailable_key_set_returns_503_problem(tmp_path, failure):
    with JwksServer(KEY_SET) as server:
        server.failure = None if failure == "unreachable" else failure
        url = closed_port_url() if failure == "unreachable" else server.url
        app = create_app(idp_settings(tmp_path, url))
        async with asgi_client(app) as http:
            response = await http.get(ACCOUNT_URL, headers=auth(rs256(claims())))

    assert response.status_code == 503
    assert response.headers["Retry-After"] == "30"
    assert response.json() == {
        "type": f"{PROBLEMS}key-set-unavailable",
        "title": "Token signing keys unavailable",
        "status": 503,
        "detail": "the identity provider's signing keys could not be fetched to verify the"
        " token; retry later",
        "instance": ACCOUNT_URL,
    }


async def test_unavailable_key_set_leaves_hmac_tokens_working(tmp_path):
    app = create_app(idp_settings(tmp_path, closed_port_url()))

    async with asgi_client(app) as http:
        response = await http.get(ACCOUNT_URL, headers=auth(jwt.encode(claims(), SECRET)))

    # Past authentication: this app was not started, so it has no ledger.
    assert response.status_code == 503
    assert response.json()["detail"] == "the ledger is not connected"


def test_key_set_is_fetched_once_while_cached():
    with JwksServer(KEY_SET) as server:
        key_set = JwksKeySet(server.url, cache_seconds=300)

        rsa_key = key_set.signing_key("rsa-1")
        ec_key = key_set.signing_key("ec-1")

        assert server.fetches == 1
    assert rsa_key.algorithm_name == "RS256"
    assert ec_key.algorithm_name == "ES256"


def test_unknown_kid_refetches_once_per_cooldown():
    with JwksServer(KEY_SET) as server:
        key_set = JwksKeySet(server.url, cache_seconds=300, refresh_cooldown_seconds=60)

        with pytest.raises(UnknownKeyId):
            key_set.signing_key("rsa-unknown")
        fetches_after_first = server.fetches
        with pytest.raises(UnknownKeyId):
            key_set.signing_key("rsa-other-unknown")

        assert fetches_after_first == 2
        assert server.fetches == 2


def test_rotated_key_is_found_by_refetch():
    rotated = public_jwk(OTHER_RSA_KEY, "rsa-2", "RS256")
    with JwksServer({"keys": list(KEY_SET["keys"])}) as server:
        key_set = JwksKeySet(server.url, cache_seconds=300)
        key_set.signing_key("rsa-1")
        server.document = {"keys": [*KEY_SET["keys"], rotated]}

        key = key_set.signing_key("rsa-2")

        assert server.fetches == 2
    assert key.key_id == "rsa-2"


def test_symmetric_key_in_key_set_is_never_used():
    secret_jwk = {"kty": "oct", "k": "c2VjcmV0LXRoYXQtc2hvdWxkLW5vdC1iZS1wdWJsaXNoZWQ", "kid": "hs"}
    with JwksServer({"keys": [*KEY_SET["keys"], secret_jwk]}) as server:
        key_set = JwksKeySet(server.url, cache_seconds=300)

        with pytest.raises(UnknownKeyId):
            key_set.signing_key("hs")


def test_key_set_without_signing_keys_is_unavailable():
    with JwksServer({"keys": []}) as server:
        key_set = JwksKeySet(server.url, cache_seconds=300)

        with pytest.raises(JwksUnavailable, match="could not be used"):
            key_set.signing_key("rsa-1")

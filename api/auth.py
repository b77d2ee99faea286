"""Bearer tokens: HS256 JWTs whose subject is the tenant and whose `scope` claim grants access.

A token carries `sub` (the tenant id), `exp` (expiry, seconds since the epoch) and `scope`, a
space-separated list of scopes as in OAuth 2.0 (RFC 6749, section 3.3), for example
`"jobs:read jobs:write"`. The algorithm is fixed by the server, never read from the token, so
a token signed with `none` or an asymmetric algorithm is rejected.
"""

import time
from dataclasses import dataclass

import jwt

ALGORITHM = "HS256"

LEEWAY_SECONDS = 30
"""Clock skew tolerated when checking `exp`, `nbf` and `iat`."""

JOBS_READ = "jobs:read"
JOBS_WRITE = "jobs:write"
BILLING_READ = "billing:read"
BILLING_ADMIN = "billing:admin"
"""Operators' scope: grant credits to any tenant and refund any job."""


class InvalidToken(Exception):
    """The token is malformed, badly signed, expired or lacks a required claim."""


@dataclass(frozen=True)
class Principal:
    """The caller that a valid token identifies."""

    subject: str
    """The token's `sub` claim: the tenant that owns the caller's jobs and credits."""

    scopes: frozenset[str]
    """Scopes granted by the token's `scope` claim."""


def mint_token(
    secret: str, *, subject: str, scopes: list[str], ttl_seconds: int = 3600 * 24
) -> str:
    """Sign a token for `subject` with the given scopes, valid for `ttl_seconds`.

    Raises:
        ValueError: `subject` is empty, a scope is empty or contains whitespace, or
            `ttl_seconds` is not positive.
    """
    if not subject:
        raise ValueError("subject must not be empty")
    for scope in scopes:
        if not scope or scope.split() != [scope]:
            raise ValueError(f"invalid scope {scope!r}: must be one word without spaces")
    if ttl_seconds <= 0:
        raise ValueError(f"ttl_seconds must be positive, got {ttl_seconds}")

    now = int(time.time())
    claims = {
        "sub": subject,
        "scope": " ".join(scopes),
        "iat": now,
        "exp": now + ttl_seconds,
    }
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(token: str, secret: str) -> Principal:
    """Verify a token's signature and claims and return the caller it identifies.

    Raises:
        InvalidToken: the token is malformed, signed with another key or algorithm, expired,
            lacks `exp` or `sub`, or has a `scope` claim that is not a string.
    """
    try:
        claims = jwt.decode(
            token,
            secret,
            algorithms=[ALGORITHM],
            options={"require": ["exp", "sub"]},
            leeway=LEEWAY_SECONDS,
        )
    except jwt.InvalidTokenError as error:
        raise InvalidToken(str(error)) from error

    subject = claims["sub"]
    if not subject:
        raise InvalidToken("the token's sub claim is empty")
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise InvalidToken("the token's scope claim must be a space-separated string")

    return Principal(subject=subject, scopes=frozenset(scope.split()))

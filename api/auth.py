"""Bearer tokens: JWTs whose subject is the tenant and whose `scope` claim grants access.

A token carries `sub` (the tenant id), `exp` (expiry, seconds since the epoch) and `scope`, a
space-separated list of scopes as in OAuth 2.0 (RFC 6749, section 3.3), for example
`"jobs:read jobs:write"`. Tokens are signed either with the shared secret (HS256, as
`cac token` mints them) or by an identity provider whose public keys the API reads from a JWKS
URL (RS256, ES256 and the other asymmetric algorithms). The accepted algorithms come from the
settings; the token's `alg` header only picks one of them, so a token signed with `none` or an
algorithm outside the list is rejected.
"""

import asyncio
import time
from collections.abc import Sequence
from dataclasses import dataclass

import jwt

from api.jwks import JwksKeySet, UnknownKeyId
from config import Settings
from config.settings import HMAC_ALGORITHMS

ALGORITHM = "HS256"
"""Algorithm of the tokens that `mint_token` signs."""

LEEWAY_SECONDS = 30
"""Default clock skew tolerated when checking `exp`, `nbf` and `iat`."""

JOBS_READ = "jobs:read"
JOBS_WRITE = "jobs:write"
BILLING_READ = "billing:read"
BILLING_ADMIN = "billing:admin"
"""Operators' scope: grant credits to any tenant and refund any job."""


class InvalidToken(Exception):
    """The token is malformed, badly signed, expired, lacks a required claim, or names a key or
    algorithm that the API does not accept."""


@dataclass(frozen=True)
class Principal:
    """The caller that a valid token identifies."""

    subject: str
    """The token's `sub` claim: the tenant that owns the caller's jobs and credits."""

    scopes: frozenset[str]
    """Scopes granted by the token's `scope` claim."""


def mint_token(
    secret: str,
    *,
    subject: str,
    scopes: list[str],
    ttl_seconds: int = 3600 * 24,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """Sign an HS256 token for `subject` with the given scopes, valid for `ttl_seconds`.

    `issuer` and `audience`, when given, become the `iss` and `aud` claims, which the API
    requires when `CAC_JWT_ISSUER` and `CAC_JWT_AUDIENCE` are set.

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
    if issuer is not None:
        claims["iss"] = issuer
    if audience is not None:
        claims["aud"] = audience
    return jwt.encode(claims, secret, algorithm=ALGORITHM)


def decode_token(token: str, secret: str) -> Principal:
    """Verify an HS256 token's signature and claims and return the caller it identifies.

    Raises:
        InvalidToken: the token is malformed, signed with another key or algorithm, expired,
            lacks `exp` or `sub`, or has a `scope` claim that is not a string.
    """
    return _decode(
        token,
        secret,
        algorithms=[ALGORITHM],
        issuer=None,
        audience=None,
        leeway_seconds=LEEWAY_SECONDS,
    )


class TokenVerifier:
    """The check of bearer tokens against the accepted algorithms, keys, issuer and audience."""

    def __init__(
        self,
        *,
        secret: str,
        algorithms: Sequence[str],
        key_set: JwksKeySet | None = None,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_seconds: int = LEEWAY_SECONDS,
    ) -> None:
        """Create a verifier.

        Args:
            secret: Key of the HMAC algorithms (HS256, HS384, HS512).
            algorithms: The accepted algorithms; a token's `alg` header must be one of them.
            key_set: Public keys of the asymmetric algorithms; required when `algorithms`
                lists one.
            issuer: The required `iss` claim; None accepts any issuer.
            audience: The audience that the `aud` claim must contain; None rejects any token
                that has an `aud` claim.
            leeway_seconds: Clock skew tolerated when checking `exp`, `nbf` and `iat`.
        """
        if key_set is None and set(algorithms) - HMAC_ALGORITHMS:
            raise ValueError("asymmetric algorithms need a key set to verify tokens")
        self._secret = secret
        self._algorithms = list(algorithms)
        self._key_set = key_set
        self._issuer = issuer
        self._audience = audience
        self._leeway_seconds = leeway_seconds

    @classmethod
    def from_settings(cls, settings: Settings) -> "TokenVerifier":
        """Build the verifier that the settings describe. It fetches nothing yet."""
        key_set = None
        if settings.jwks_url:
            key_set = JwksKeySet(settings.jwks_url, cache_seconds=settings.jwks_cache_seconds)
        return cls(
            secret=settings.jwt_secret.get_secret_value(),
            algorithms=settings.jwt_algorithms,
            key_set=key_set,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway_seconds=settings.jwt_leeway_seconds,
        )

    async def verify(self, token: str) -> Principal:
        """Verify the token's signature and claims and return the caller it identifies.

        The key of a token signed with an asymmetric algorithm is looked up in a worker thread,
        because the lookup fetches the key set when the cached copy is missing or stale.

        Raises:
            InvalidToken: the token is malformed, expired, lacks `exp` or `sub`, has another
                issuer or audience, is signed with an algorithm that is not accepted, with
                another key, or names a `kid` that is not in the key set.
            JwksUnavailable: the key set could not be fetched or is not a usable key set.
        """
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError as error:
            raise InvalidToken(str(error)) from error

        algorithm = header.get("alg")
        if algorithm not in self._algorithms:
            raise InvalidToken(
                f"the alg {algorithm!r} is not accepted; accepted: {', '.join(self._algorithms)}"
            )

        key: str | jwt.PyJWK
        if algorithm in HMAC_ALGORITHMS:
            key = self._secret
        else:
            key = await self._public_key(header.get("kid"))

        return _decode(
            token,
            key,
            algorithms=self._algorithms,
            issuer=self._issuer,
            audience=self._audience,
            leeway_seconds=self._leeway_seconds,
        )

    async def _public_key(self, kid: object) -> jwt.PyJWK:
        if not isinstance(kid, str) or not kid:
            raise InvalidToken("the token header has no kid naming the key that signed it")
        if self._key_set is None:
            # Unreachable: the constructor requires a key set for asymmetric algorithms.
            raise InvalidToken("no key set is configured for asymmetric algorithms")
        try:
            return await asyncio.to_thread(self._key_set.signing_key, kid)
        except UnknownKeyId:
            raise InvalidToken(f"no key with kid {kid!r} in the key set") from None


def _decode(
    token: str,
    key: str | jwt.PyJWK,
    *,
    algorithms: list[str],
    issuer: str | None,
    audience: str | None,
    leeway_seconds: int,
) -> Principal:
    required = ["exp", "sub"]
    if issuer is not None:
        required.append("iss")
    if audience is not None:
        required.append("aud")
    try:
        claims = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            options={"require": required},
            issuer=issuer,
            audience=audience,
            leeway=leeway_seconds,
        )
    except jwt.InvalidTokenError as error:
        raise InvalidToken(str(error)) from error

    subject = claims["sub"]
    if not subject or not subject.strip():
        raise InvalidToken("the token's sub claim is empty")
    if not subject.isprintable():
        raise InvalidToken("the token's sub claim contains control characters")
    scope = claims.get("scope", "")
    if not isinstance(scope, str):
        raise InvalidToken("the token's scope claim must be a space-separated string")

    return Principal(subject=subject, scopes=frozenset(scope.split()))

"""Public keys of an identity provider, read from its JSON Web Key Set (RFC 7517) URL.

The API is an OAuth 2.0 resource server: it verifies tokens that the provider signed with an
asymmetric algorithm, using the key that the token's `kid` header names. PyJWT's `PyJWKClient`
fetches the set and caches it for `cache_seconds`. A `kid` that is not in the cached set makes
one fresh fetch, because the provider may have rotated its keys, but at most one per
`refresh_cooldown_seconds`, so that tokens with made-up key ids cannot flood the provider.

Every method here blocks on HTTP while it fetches; call it off the event loop.
"""

import threading
import time

from jwt import PyJWK, PyJWKClient
from jwt.exceptions import PyJWKClientError, PyJWKSetError

FETCH_TIMEOUT_SECONDS = 5.0
"""Timeout of one request for the key set."""

REFRESH_COOLDOWN_SECONDS = 30.0
"""Minimum time between two fetches caused by an unknown `kid`."""

_ASYMMETRIC_KEY_TYPES = frozenset({"RSA", "EC", "OKP"})


class JwksUnavailable(Exception):
    """The key set could not be fetched, or the response was not a key set with signing keys."""


class UnknownKeyId(LookupError):
    """No signing key in the key set has the requested `kid`."""


class JwksKeySet:
    """The signing keys published at one JWKS URL."""

    def __init__(
        self,
        url: str,
        *,
        cache_seconds: float,
        timeout_seconds: float = FETCH_TIMEOUT_SECONDS,
        refresh_cooldown_seconds: float = REFRESH_COOLDOWN_SECONDS,
    ) -> None:
        self.url = url
        self._client = PyJWKClient(
            url,
            cache_jwk_set=True,
            lifespan=cache_seconds,
            timeout=timeout_seconds,
            # The cooldown is enforced in `signing_key` instead, which distinguishes a refresh
            # from a first fetch.
            cooldown_duration=0,
        )
        self._refresh_cooldown_seconds = refresh_cooldown_seconds
        self._refreshed_at: float | None = None
        self._refresh_lock = threading.Lock()

    def signing_key(self, kid: str) -> PyJWK:
        """Return the RSA, EC or OKP signing key whose key id is `kid`.

        Raises:
            UnknownKeyId: no such key, even after fetching the set again.
            JwksUnavailable: the key set could not be fetched or is not a usable key set.
        """
        key = _find(self._fetch(refresh=False), kid)
        if key is not None:
            return key

        with self._refresh_lock:
            now = time.monotonic()
            cooling_down = (
                self._refreshed_at is not None
                and now - self._refreshed_at < self._refresh_cooldown_seconds
            )
            if not cooling_down:
                self._refreshed_at = now
                key = _find(self._fetch(refresh=True), kid)
        if key is None:
            raise UnknownKeyId(kid)
        return key

    def _fetch(self, *, refresh: bool) -> list[PyJWK]:
        try:
            return self._client.get_signing_keys(refresh=refresh)
        # PyJWKClient wraps connection errors, but lets a body that is not JSON (ValueError)
        # and a connection lost while reading the body (OSError) through.
        except (PyJWKClientError, PyJWKSetError, ValueError, OSError) as error:
            message = f"the key set at {self.url} could not be used: {error}"
            raise JwksUnavailable(message) from error


def _find(keys: list[PyJWK], kid: str) -> PyJWK | None:
    for key in keys:
        # A symmetric ("oct") key has no place in a published key set, so it never verifies.
        if key.key_id == kid and key.key_type in _ASYMMETRIC_KEY_TYPES:
            return key
    return None

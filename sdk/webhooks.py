"""Signatures of the webhook deliveries that a job's `callbackUrl` receives.

Each delivery is a POST of a JSON body with these headers:

- `Webhook-Id`: `<job id>/<event sequence>`, the same on every retry of one delivery, so a
  receiver can drop duplicates (delivery is at least once).
- `Webhook-Timestamp`: seconds since the epoch when this try was signed.
- `Webhook-Signature`: `v1=` and the hex HMAC-SHA256, keyed with the tenant's webhook secret
  (`GET /v1/account/webhook-secret`), of `<timestamp>.<body bytes>`.

`verify_signature` checks the three together and rejects a timestamp outside the tolerance,
so a captured delivery cannot be replayed later.
"""

import hashlib
import hmac
import time

SIGNATURE_VERSION = "v1"
DEFAULT_TOLERANCE_SECONDS = 300


class InvalidSignature(Exception):
    """The delivery's signature does not match its body and timestamp, or the timestamp is
    outside the tolerance."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """Return the `Webhook-Signature` header value for a body signed at `timestamp`."""
    message = str(timestamp).encode() + b"." + body
    digest = hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()
    return f"{SIGNATURE_VERSION}={digest}"


def verify_signature(
    secret: str,
    *,
    timestamp: str,
    signature: str,
    body: bytes,
    tolerance_seconds: int = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Check a delivery's `Webhook-Timestamp` and `Webhook-Signature` headers against its body.

    Raises:
        InvalidSignature: The timestamp is not an integer or is outside the tolerance, or the
            signature does not match.
    """
    try:
        signed_at = int(timestamp)
    except ValueError:
        raise InvalidSignature(f"Webhook-Timestamp {timestamp!r} is not an integer") from None
    current = time.time() if now is None else now
    if abs(current - signed_at) > tolerance_seconds:
        raise InvalidSignature(
            f"Webhook-Timestamp {signed_at} is more than {tolerance_seconds} s from now"
        )
    if not hmac.compare_digest(sign(secret, signed_at, body), signature):
        raise InvalidSignature("Webhook-Signature does not match the body and timestamp")

"""`Idempotency-Key` headers used as ledger transaction keys by the admin billing routes.

The key goes to the ledger unchanged, so a retry of a grant or refund with the same key
returns the first transaction. The ledger rejects the same key with other contents as an
`IdempotencyConflict`, which `conflict_error` turns into a 422.
"""

from datetime import datetime
from typing import Annotated

from fastapi import Header
from fastapi.exceptions import RequestValidationError
from pydantic import AfterValidator

from api.credits import format_credits
from api.errors import field_error
from api.idempotency import IDEMPOTENCY_KEY_PATTERN
from ledger.errors import IdempotencyConflict
from ledger.posting import RESERVED_KEY_PREFIX

KEY_HEADER = "Idempotency-Key"

# The ledger's name of each compared field, and the request field that carries it. A kind or
# job that differs means the key belongs to another transaction, so the header is to blame.
_CONFLICT_LOCATIONS = {
    "amount": ("body", "amount"),
    "reason": ("body", "reason"),
    "expires_at": ("body", "expiresAt"),
}


def _check_not_reserved(key: str) -> str:
    if key.startswith(RESERVED_KEY_PREFIX):
        raise ValueError(
            f"keys starting with {RESERVED_KEY_PREFIX!r} are reserved for the ledger's"
            " expire transactions"
        )
    return key


LedgerKey = Annotated[
    str,
    Header(
        alias=KEY_HEADER,
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="Required: 1 to 255 printable ASCII characters, unique per tenant. A retry"
        " with the same key returns the first transaction instead of posting another.",
    ),
    AfterValidator(_check_not_reserved),
]


def conflict_error(error: IdempotencyConflict) -> RequestValidationError:
    """Build the 422 for a key that the ledger posted before with other contents.

    The error names the request field that differs from the first request, or the
    `Idempotency-Key` header when the key was posted for another kind of transaction or job.
    """
    posted = _describe(error.field, error.posted)
    location = _CONFLICT_LOCATIONS.get(error.field)
    if location is None:
        return field_error(
            ("header", KEY_HEADER),
            f"{KEY_HEADER} {error.key!r} was already used for a transaction with"
            f" {error.field} {posted}; use a new key",
        )
    return field_error(
        location,
        f"{KEY_HEADER} {error.key!r} was already used with {location[-1]} {posted};"
        f" send the same {location[-1]} to retry, or use a new key",
    )


def _describe(field: str, value: object) -> str:
    if field == "amount" and isinstance(value, int):
        return format_credits(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if value is None:
        return "null"
    return repr(value)

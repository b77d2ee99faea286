"""A request to post a transaction, what the database returns for it, and the result.

The posting rules run in the database: as PL/pgSQL functions on PostgreSQL
(`ledger.posting_plpgsql`) and as SQLAlchemy Core statements elsewhere
(`ledger.posting_python`). Both return an `Outcome`, and `resolve_outcome` turns it into the
`PostedTransaction` or the `LedgerError` that callers see, so both backends report the same
results with the same messages.
"""

from dataclasses import dataclass, replace
from datetime import UTC, datetime

from ledger.errors import (
    DuplicateHold,
    HoldExceeded,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    LedgerError,
    RefundExceeded,
    UnknownHold,
)
from ledger.models import CAPTURE, GRANT, HOLD, PLATFORM_TENANT_ID, REFUND, RELEASE
from ledger.money import MAX_MICROS

POSTABLE_KINDS = (GRANT, HOLD, CAPTURE, RELEASE, REFUND)
"""Kinds that callers post; `expire` transactions are posted only by the ledger itself."""

RESERVED_KEY_PREFIX = "expire/"
"""Prefix of the keys of expire transactions, which callers may not use."""


@dataclass(frozen=True)
class Operation:
    """One transaction to post, as `ledger.post_batch` takes it.

    The fields are the keyword arguments of the operation of the same name, such as
    `ledger.hold`.
    """

    kind: str
    """One of "grant", "hold", "capture", "release", "refund"."""

    tenant_id: str
    """Tenant whose accounts the transaction moves money from or to."""

    amount_micros: int
    """Amount to move, in micro-credits."""

    key: str
    """Idempotency key, unique per tenant."""

    job_id: str | None = None
    """Job of a hold, capture, release or refund; None for a grant."""

    reason: str = ""
    """Free text stored with the transaction."""

    expires_at: datetime | None = None
    """Expiry of a grant's credits, timezone-aware; None for credits that never expire."""


@dataclass(frozen=True)
class PostedTransaction:
    """A transaction that the ledger has posted, now or on an earlier request with its key."""

    transaction_id: int
    """Id of the row in `transactions`."""

    tenant_id: str
    """Tenant whose accounts the transaction moved money from or to."""

    key: str
    """Idempotency key, unique per tenant."""

    kind: str
    """One of "grant", "hold", "capture", "release", "refund", "expire"."""

    job_id: str | None
    """Job of a hold, capture, release or refund; None for a grant or an expiry."""

    amount_micros: int
    """Amount moved, in micro-credits; always positive."""

    replayed: bool
    """True when the key was posted before and this is that first result, unchanged."""


@dataclass(frozen=True)
class Outcome:
    """Result that the database returned for one posting request.

    `status` is "posted", "existing" (the key was posted before, and the other fields describe
    that transaction), "nothing" (an expiry that had nothing to expire), or the name of a
    rejection: "insufficient_funds", "duplicate_hold", "unknown_hold", "hold_exceeded",
    "refund_exceeded". A rejection wrote nothing, and `limit_micros` is the amount that was
    available, remaining or refundable.
    """

    status: str
    transaction_id: int | None = None
    kind: str | None = None
    job_id: str | None = None
    amount: int | None = None
    reason: str | None = None
    expires_at: datetime | None = None
    limit_micros: int | None = None


def validate_operation(operation: Operation) -> Operation:
    """Check an operation before it reaches the database.

    Returns:
        The operation, with `expires_at` converted to UTC.

    Raises:
        InvalidAmount: `amount_micros` is not a positive int of at most 10**18.
        ValueError: the kind is unknown, `tenant_id` or `key` is empty, `tenant_id` is the
            platform's, or `key` starts with "expire/". Or `job_id` is missing for a hold,
            capture, release or refund, or given for a grant. Or `expires_at` is given for
            anything but a grant, or has no timezone.
    """
    amount = operation.amount_micros
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_MICROS:
        raise InvalidAmount(amount)

    if operation.kind not in POSTABLE_KINDS:
        raise ValueError(
            f"invalid transaction kind {operation.kind!r}: must be one of {POSTABLE_KINDS}"
        )
    if not operation.tenant_id:
        raise ValueError("tenant_id must not be empty")
    if operation.tenant_id == PLATFORM_TENANT_ID:
        raise ValueError(
            f"tenant_id {PLATFORM_TENANT_ID!r} is reserved for the platform's own accounts"
        )
    if not operation.key:
        raise ValueError("key must not be empty")
    if operation.key.startswith(RESERVED_KEY_PREFIX):
        raise ValueError(
            f"invalid key {operation.key!r}: keys starting with {RESERVED_KEY_PREFIX!r} are"
            " reserved for the ledger's expire transactions"
        )

    if operation.kind == GRANT:
        if operation.job_id is not None:
            raise ValueError("a grant takes no job_id")
    elif not operation.job_id:
        raise ValueError("job_id must not be empty")

    if operation.expires_at is None:
        return operation
    if operation.kind != GRANT:
        raise ValueError(f"expires_at applies only to a grant, not to a {operation.kind}")
    if operation.expires_at.utcoffset() is None:
        raise ValueError(
            f"expires_at {operation.expires_at.isoformat()} has no timezone; pass an aware"
            " datetime such as datetime(2030, 1, 1, tzinfo=UTC)"
        )
    return replace(operation, expires_at=operation.expires_at.astimezone(UTC))


def resolve_outcome(operation: Operation, outcome: Outcome) -> PostedTransaction | LedgerError:
    """Turn the database's outcome for a validated operation into its result or error."""
    match outcome.status:
        case "posted":
            assert outcome.transaction_id is not None
            return PostedTransaction(
                transaction_id=outcome.transaction_id,
                tenant_id=operation.tenant_id,
                key=operation.key,
                kind=operation.kind,
                job_id=operation.job_id,
                amount_micros=operation.amount_micros,
                replayed=False,
            )
        case "existing":
            return _resolve_existing(operation, outcome)
        case "insufficient_funds":
            return InsufficientFunds(
                tenant_id=operation.tenant_id,
                requested_micros=operation.amount_micros,
                available_micros=_limit(outcome),
            )
        case "duplicate_hold":
            return DuplicateHold(job_id=_job_id(operation))
        case "unknown_hold":
            return UnknownHold(tenant_id=operation.tenant_id, job_id=_job_id(operation))
        case "hold_exceeded":
            return HoldExceeded(
                job_id=_job_id(operation),
                requested_micros=operation.amount_micros,
                remaining_micros=_limit(outcome),
            )
        case "refund_exceeded":
            return RefundExceeded(
                job_id=_job_id(operation),
                requested_micros=operation.amount_micros,
                refundable_micros=_limit(outcome),
            )
    raise LedgerError(f"the database returned an unknown posting status {outcome.status!r}")


def _resolve_existing(
    operation: Operation, outcome: Outcome
) -> PostedTransaction | IdempotencyConflict:
    comparisons = [
        ("kind", outcome.kind, operation.kind),
        ("job_id", outcome.job_id, operation.job_id),
        ("amount", outcome.amount, operation.amount_micros),
        ("reason", outcome.reason, operation.reason),
    ]
    if operation.kind == GRANT and outcome.kind == GRANT:
        comparisons.append(("expires_at", outcome.expires_at, operation.expires_at))

    for field, posted_value, requested_value in comparisons:
        if posted_value != requested_value:
            return IdempotencyConflict(
                tenant_id=operation.tenant_id,
                key=operation.key,
                field=field,
                posted=posted_value,
                requested=requested_value,
            )

    assert outcome.transaction_id is not None and outcome.amount is not None
    return PostedTransaction(
        transaction_id=outcome.transaction_id,
        tenant_id=operation.tenant_id,
        key=operation.key,
        kind=operation.kind,
        job_id=operation.job_id,
        amount_micros=outcome.amount,
        replayed=True,
    )


def _limit(outcome: Outcome) -> int:
    return outcome.limit_micros if outcome.limit_micros is not None else 0


def _job_id(operation: Operation) -> str:
    return operation.job_id or ""

"""Posting rules of the ledger: grant, hold, capture, release and refund.

Each operation is one database transaction that moves money between two accounts:

- grant: platform funding -> tenant available, as a new lot with an optional expiry
- hold: tenant available -> tenant held, and creates the job's hold, drawn from the tenant's
  lots that expire first
- capture: tenant held -> platform revenue, against the job's hold
- release: tenant held -> tenant available, against the job's hold, back into the lots the
  hold drew from
- refund: platform revenue -> tenant available, at most what was captured from the job and
  not refunded yet, as a new lot that never expires

`ledger.expiry` explains lots and how they expire.

Every operation carries a key, unique per tenant. A second request with a posted key returns
the first result with `replayed=True` and moves nothing, provided that its kind, job id,
amount, reason and (for a grant) expiry match. Otherwise it raises `IdempotencyConflict`. A rejected
operation writes nothing, key included, so the same key may be posted again later (for example
after a grant covers a hold that failed).

On PostgreSQL each operation is one call of a PL/pgSQL function in autocommit mode: one round
trip, which also commits (`ledger.posting_plpgsql`). Elsewhere, and on PostgreSQL when the
engine has the execution option `ledger_plpgsql=False`, the same rules run as SQLAlchemy Core
statements in one transaction (`ledger.posting_python`).

NOTE: every grant updates the one platform funding row and every capture the one revenue row,
so on PostgreSQL those operations queue on a row lock across all tenants. Splitting each
platform account into several rows would lift that limit if it ever matters.
"""

import logging
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger import posting_plpgsql, posting_python
from ledger.db import run_with_reconnect
from ledger.errors import InvalidAmount, LedgerError
from ledger.models import CAPTURE, GRANT, HOLD, REFUND, RELEASE
from ledger.posting import (
    Operation,
    Outcome,
    PostedTransaction,
    resolve_outcome,
    validate_operation,
)

logger = logging.getLogger(__name__)

__all__ = [
    "Operation",
    "PostedTransaction",
    "capture",
    "grant",
    "hold",
    "post_batch",
    "refund",
    "release",
]

BATCH_ATTEMPTS = 3
"""Attempts of a batch that PostgreSQL aborts to break a deadlock or a serialization failure."""

RETRYABLE_SQLSTATES = frozenset({"40P01", "40001"})
"""deadlock_detected and serialization_failure: the whole transaction may be retried."""


def grant(
    engine: Engine,
    *,
    tenant_id: str,
    amount_micros: int,
    key: str,
    reason: str = "",
    expires_at: datetime | None = None,
) -> PostedTransaction:
    """Give a tenant credits, moving them from platform funding to the tenant's available balance.

    Args:
        engine: Ledger database engine.
        tenant_id: Tenant that receives the credits.
        amount_micros: Credits to grant, in micro-credits.
        key: Idempotency key, unique per tenant.
        reason: Free text stored with the transaction, for example "signup bonus".
        expires_at: When the credits expire, timezone-aware; None (the default) for credits
            that never expire. `ledger.expire_grants` posts the expiry.

    Returns:
        The posted transaction.

    Raises:
        InvalidAmount: `amount_micros` is not a positive int of at most 10**18.
        IdempotencyConflict: `key` was posted before with other contents.
        ValueError: `tenant_id` or `key` is empty or reserved, or `expires_at` has no timezone.
    """
    return _post_one(
        engine,
        Operation(
            kind=GRANT,
            tenant_id=tenant_id,
            amount_micros=amount_micros,
            key=key,
            reason=reason,
            expires_at=expires_at,
        ),
    )


def hold(
    engine: Engine,
    *,
    tenant_id: str,
    job_id: str,
    amount_micros: int,
    key: str,
    reason: str = "",
) -> PostedTransaction:
    """Reserve a job's budget, moving it from the tenant's available balance to held.

    A job has one hold, which later captures and releases draw on. The hold draws on the
    tenant's lots that expire first. Credits of a lot past its expiry cannot be held, even
    before `expire_grants` has expired them.

    Args:
        engine: Ledger database engine.
        tenant_id: Tenant that pays for the job.
        job_id: Job whose budget is held.
        amount_micros: Budget to hold, in micro-credits.
        key: Idempotency key, unique per tenant.
        reason: Free text stored with the transaction.

    Returns:
        The posted transaction.

    Raises:
        InvalidAmount: `amount_micros` is not a positive int of at most 10**18.
        InsufficientFunds: the tenant's spendable credits are below `amount_micros`.
        DuplicateHold: the job already has a hold posted under another key.
        IdempotencyConflict: `key` was posted before with other contents.
        ValueError: `tenant_id`, `job_id` or `key` is empty, or `tenant_id` or `key` is
            reserved.
    """
    return _post_one(
        engine,
        Operation(
            kind=HOLD,
            tenant_id=tenant_id,
            job_id=job_id,
            amount_micros=amount_micros,
            key=key,
            reason=reason,
        ),
    )


def capture(
    engine: Engine,
    *,
    tenant_id: str,
    job_id: str,
    amount_micros: int,
    key: str,
    reason: str = "",
) -> PostedTransaction:
    """Charge a job's cost, moving it from the tenant's held balance to platform revenue.

    Args:
        engine: Ledger database engine.
        tenant_id: Tenant whose credits are held for the job.
        job_id: Job whose hold is charged.
        amount_micros: Cost to capture, in micro-credits.
        key: Idempotency key, unique per tenant.
        reason: Free text stored with the transaction.

    Returns:
        The posted transaction.

    Raises:
        InvalidAmount: `amount_micros` is not a positive int of at most 10**18.
        UnknownHold: the job has no hold for this tenant.
        HoldExceeded: less than `amount_micros` is left of the job's hold.
        IdempotencyConflict: `key` was posted before with other contents.
        ValueError: `tenant_id`, `job_id` or `key` is empty, or `tenant_id` or `key` is
            reserved.
    """
    return _post_one(
        engine,
        Operation(
            kind=CAPTURE,
            tenant_id=tenant_id,
            job_id=job_id,
            amount_micros=amount_micros,
            key=key,
            reason=reason,
        ),
    )


def release(
    engine: Engine,
    *,
    tenant_id: str,
    job_id: str,
    amount_micros: int,
    key: str,
    reason: str = "",
) -> PostedTransaction:
    """Return unused budget, moving it from the tenant's held balance back to available.

    The credits go back to the lots the hold drew them from. Credits of a lot that has expired
    since then leave the available balance again at once, through an expire transaction.

    Args:
        engine: Ledger database engine.
        tenant_id: Tenant whose credits are held for the job.
        job_id: Job whose hold is released.
        amount_micros: Amount to release, in micro-credits.
        key: Idempotency key, unique per tenant.
        reason: Free text stored with the transaction.

    Returns:
        The posted release.

    Raises:
        InvalidAmount: `amount_micros` is not a positive int of at most 10**18.
        UnknownHold: the job has no hold for this tenant.
        HoldExceeded: less than `amount_micros` is left of the job's hold.
        IdempotencyConflict: `key` was posted before with other contents.
        ValueError: `tenant_id`, `job_id` or `key` is empty, or `tenant_id` or `key` is
            reserved.
    """
    return _post_one(
        engine,
        Operation(
            kind=RELEASE,
            tenant_id=tenant_id,
            job_id=job_id,
            amount_micros=amount_micros,
            key=key,
            reason=reason,
        ),
    )


def refund(
    engine: Engine,
    *,
    tenant_id: str,
    job_id: str,
    amount_micros: int,
    key: str,
    reason: str,
) -> PostedTransaction:
    """Give back part or all of a job's captured cost, from platform revenue to available.

    A job's refunds together never exceed what was captured from it. The refunded credits
    are a new lot that never expires.

    Args:
        engine: Ledger database engine.
        tenant_id: Tenant that paid for the job.
        job_id: Job whose cost is refunded.
        amount_micros: Amount to refund, in micro-credits.
        key: Idempotency key, unique per tenant.
        reason: Why the job is refunded, stored with the transaction; must not be empty.

    Returns:
        The posted transaction.

    Raises:
        InvalidAmount: `amount_micros` is not a positive int of at most 10**18.
        UnknownHold: the job has no hold for this tenant.
        RefundExceeded: less than `amount_micros` was captured and not yet refunded.
        IdempotencyConflict: `key` was posted before with other contents.
        ValueError: `tenant_id`, `job_id`, `key` or `reason` is empty, or `tenant_id` or
            `key` is reserved.
    """
    if not reason:
        raise ValueError("a refund needs a reason, which the tenant's statement shows")
    return _post_one(
        engine,
        Operation(
            kind=REFUND,
            tenant_id=tenant_id,
            job_id=job_id,
            amount_micros=amount_micros,
            key=key,
            reason=reason,
        ),
    )


def post_batch(
    engine: Engine, operations: Sequence[Operation]
) -> list[PostedTransaction | LedgerError]:
    """Post many operations, in order, in one database transaction and one commit.

    Each operation is still all or nothing and idempotent by its key: a rejected operation
    writes nothing and the next one goes ahead. On PostgreSQL the whole batch is one call of
    `ledger_post_batch`. Each operation works on the state that the ones before it left, so a
    batch may grant credits and hold them.

    Two concurrent batches over the same tenants can deadlock, because each locks tenants in
    its own order. PostgreSQL then aborts one of them, which this function retries up to
    `BATCH_ATTEMPTS` times in all. A single operation that PostgreSQL aborts this way raises
    `sqlalchemy.exc.OperationalError`.

    Args:
        engine: Ledger database engine.
        operations: The operations to post, in order.

    Returns:
        For each operation, at the same index: the posted transaction (replayed or not), or
        the `LedgerError` that rejected it.

    Raises:
        ValueError: an operation is malformed (see `ledger.posting.validate_operation`), or
            a refund has no reason. Nothing is posted then.
        sqlalchemy.exc.OperationalError: the database failed, or the batch deadlocked
            `BATCH_ATTEMPTS` times. Nothing is posted then.
    """
    results: list[PostedTransaction | LedgerError | None] = [None] * len(operations)
    valid: list[tuple[int, Operation]] = []
    for index, operation in enumerate(operations):
        if operation.kind == REFUND and not operation.reason:
            raise ValueError(f"operation {index}: a refund needs a reason")
        try:
            valid.append((index, validate_operation(operation)))
        except InvalidAmount as error:
            results[index] = error

    if valid:
        outcomes = _post_many_with_retries(engine, [operation for _, operation in valid])
        for (index, operation), outcome in zip(valid, outcomes, strict=True):
            result = resolve_outcome(operation, outcome)
            if isinstance(result, PostedTransaction):
                _log_posted(result)
            results[index] = result

    logger.debug("posted a batch of %d operations", len(operations))
    assert all(result is not None for result in results)
    return results  # type: ignore[return-value]


def uses_plpgsql(engine: Engine) -> bool:
    """Tell whether operations on this engine run as PL/pgSQL functions."""
    return engine.dialect.name == "postgresql" and engine.get_execution_options().get(
        "ledger_plpgsql", True
    )


def _post_one(engine: Engine, operation: Operation) -> PostedTransaction:
    operation = validate_operation(operation)

    if uses_plpgsql(engine):
        outcome = posting_plpgsql.post(engine, operation)
    else:
        (outcome,) = _post_many_in_python(engine, [operation])

    result = resolve_outcome(operation, outcome)
    if isinstance(result, LedgerError):
        raise result
    _log_posted(result)
    return result


def _post_many_with_retries(engine: Engine, operations: list[Operation]) -> list[Outcome]:
    for attempt in range(1, BATCH_ATTEMPTS + 1):
        try:
            return _post_many(engine, operations)
        except sa.exc.OperationalError as error:
            sqlstate = getattr(error.orig, "sqlstate", None)
            if sqlstate not in RETRYABLE_SQLSTATES or attempt == BATCH_ATTEMPTS:
                raise
            logger.warning(
                "batch of %d operations aborted by PostgreSQL (SQLSTATE %s), attempt %d of"
                " %d; retrying",
                len(operations),
                sqlstate,
                attempt,
                BATCH_ATTEMPTS,
            )
    raise AssertionError("unreachable: the last attempt returns or raises")


def _post_many(engine: Engine, operations: list[Operation]) -> list[Outcome]:
    if uses_plpgsql(engine):
        return posting_plpgsql.post_many(engine, operations)
    return _post_many_in_python(engine, operations)


def _post_many_in_python(engine: Engine, operations: list[Operation]) -> list[Outcome]:
    def post_all() -> list[Outcome]:
        now = datetime.now(UTC)
        with engine.begin() as connection:
            return [posting_python.post(connection, operation, now) for operation in operations]

    return run_with_reconnect(engine, post_all)


def _log_posted(posted: PostedTransaction) -> None:
    logger.debug(
        "%s %s transaction %d: tenant=%s job=%s key=%s amount_micros=%d",
        "replayed" if posted.replayed else "posted",
        posted.kind,
        posted.transaction_id,
        posted.tenant_id,
        posted.job_id,
        posted.key,
        posted.amount_micros,
    )

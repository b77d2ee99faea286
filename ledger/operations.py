"""Posting rules of the ledger: grant, hold, capture and release.

Each operation is one database transaction that moves money between two accounts:

- grant: platform funding -> tenant available
- hold: tenant available -> tenant held, and creates the job's hold
- capture: tenant held -> platform revenue, against the job's hold
- release: tenant held -> tenant available, against the job's hold

Every operation carries a key, unique per tenant. Its transaction row is inserted first, so a
second request with the same key finds it. If the kind, job id and amount match, the second
request returns the first result with `replayed=True` and moves nothing. Otherwise it raises
`IdempotencyConflict`. A rejected operation rolls back completely, key included, so the same key
may be posted again later (for example after a grant covers a hold that failed).

NOTE: every grant updates the one platform funding row and every capture the one revenue row,
so on PostgreSQL those operations queue on a row lock across all tenants. Splitting each
platform account into several rows would lift that limit if it ever matters.
TODO: refund (platform revenue -> tenant available) is not implemented. It needs a per-tenant
limit, so that no tenant gets back more than it was charged.
"""

import logging
from dataclasses import dataclass
from typing import NoReturn

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection, Engine

from ledger.errors import (
    DuplicateHold,
    HoldExceeded,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    LedgerError,
    UnknownHold,
)
from ledger.models import (
    ACCOUNTS_ALLOWING_NEGATIVE,
    AVAILABLE,
    CAPTURE,
    FUNDING,
    GRANT,
    HELD,
    HOLD,
    PLATFORM_TENANT_ID,
    RELEASE,
    REVENUE,
    accounts,
    holds,
    postings,
    transactions,
)
from ledger.money import MAX_MICROS

logger = logging.getLogger(__name__)

AccountKey = tuple[str, str]
"""An account's (tenant_id, name)."""


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
    """One of "grant", "hold", "capture", "release"."""

    job_id: str | None
    """Job of a hold, capture or release; None for a grant."""

    amount_micros: int
    """Amount moved, in micro-credits; always positive."""

    replayed: bool
    """True when the key was posted before and this is that first result, unchanged."""


def grant(
    engine: Engine, *, tenant_id: str, amount_micros: int, key: str, reason: str = ""
) -> PostedTransaction:
    """Give a tenant credits, moving them from platform funding to the tenant's available balance.

    Args:
        engine: Ledger database engine.
        tenant_id: Tenant that receives the credits.
        amount_micros: Credits to grant, in micro-credits.
        key: Idempotency key, unique per tenant.
        reason: Free text stored with the transaction, for example "signup bonus".

    Returns:
        The posted transaction.

    Raises:
        InvalidAmount: `amount_micros` is not a positive int of at most 10**18.
        IdempotencyConflict: `key` was posted before with other contents.
        ValueError: `tenant_id` or `key` is empty, or `tenant_id` is the platform's.
    """
    _validate_request(tenant_id=tenant_id, key=key, amount_micros=amount_micros)

    with engine.begin() as connection:
        posted = _claim_key(
            connection,
            tenant_id=tenant_id,
            key=key,
            kind=GRANT,
            job_id=None,
            amount_micros=amount_micros,
            reason=reason,
        )
        if posted.replayed:
            return posted

        funding = (PLATFORM_TENANT_ID, FUNDING)
        available = (tenant_id, AVAILABLE)
        account_ids = _ensure_accounts(connection, [funding, available])

        moved = _transfer(
            connection,
            transaction_id=posted.transaction_id,
            source_id=account_ids[funding],
            destination_id=account_ids[available],
            amount_micros=amount_micros,
        )
        if not moved:
            # Funding is created with allow_negative set, so only a manual edit gets here.
            raise LedgerError(
                "the platform funding account does not allow a negative balance; set"
                " allow_negative on it to grant credits"
            )

    _log_posted(posted)
    return posted


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

    A job has one hold, which later captures and releases draw on.

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
        InsufficientFunds: the tenant's available balance is below `amount_micros`.
        DuplicateHold: the job already has a hold posted under another key.
        IdempotencyConflict: `key` was posted before with other contents.
        ValueError: `tenant_id`, `job_id` or `key` is empty, or `tenant_id` is the platform's.
    """
    _validate_request(tenant_id=tenant_id, key=key, amount_micros=amount_micros, job_id=job_id)

    with engine.begin() as connection:
        posted = _claim_key(
            connection,
            tenant_id=tenant_id,
            key=key,
            kind=HOLD,
            job_id=job_id,
            amount_micros=amount_micros,
            reason=reason,
        )
        if posted.replayed:
            return posted

        inserted_job_id = connection.execute(
            _dialect_insert(connection, holds)
            .values(
                job_id=job_id, tenant_id=tenant_id, amount=amount_micros, captured=0, released=0
            )
            .on_conflict_do_nothing(index_elements=[holds.c.job_id])
            .returning(holds.c.job_id)
        ).scalar_one_or_none()
        if inserted_job_id is None:
            raise DuplicateHold(job_id=job_id)

        available = (tenant_id, AVAILABLE)
        held = (tenant_id, HELD)
        account_ids = _ensure_accounts(connection, [available, held])

        moved = _transfer(
            connection,
            transaction_id=posted.transaction_id,
            source_id=account_ids[available],
            destination_id=account_ids[held],
            amount_micros=amount_micros,
        )
        if not moved:
            balance = connection.execute(
                sa.select(accounts.c.balance).where(accounts.c.id == account_ids[available])
            ).scalar_one()
            raise InsufficientFunds(
                tenant_id=tenant_id, requested_micros=amount_micros, available_micros=balance
            )

    _log_posted(posted)
    return posted


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

    The amount is drawn from the job's hold; several partial captures are allowed while the
    hold has enough left.

    Args:
        engine: Ledger database engine.
        tenant_id: Tenant whose credits are held for the job.
        job_id: Job whose hold is captured.
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
        ValueError: `tenant_id`, `job_id` or `key` is empty, or `tenant_id` is the platform's.
    """
    return _draw_on_hold(
        engine,
        kind=CAPTURE,
        destination=(PLATFORM_TENANT_ID, REVENUE),
        tenant_id=tenant_id,
        job_id=job_id,
        amount_micros=amount_micros,
        key=key,
        reason=reason,
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

    Args:
        engine: Ledger database engine.
        tenant_id: Tenant whose credits are held for the job.
        job_id: Job whose hold is released.
        amount_micros: Amount to release, in micro-credits.
        key: Idempotency key, unique per tenant.
        reason: Free text stored with the transaction.

    Returns:
        The posted transaction.

    Raises:
        InvalidAmount: `amount_micros` is not a positive int of at most 10**18.
        UnknownHold: the job has no hold for this tenant.
        HoldExceeded: less than `amount_micros` is left of the job's hold.
        IdempotencyConflict: `key` was posted before with other contents.
        ValueError: `tenant_id`, `job_id` or `key` is empty, or `tenant_id` is the platform's.
    """
    return _draw_on_hold(
        engine,
        kind=RELEASE,
        destination=(tenant_id, AVAILABLE),
        tenant_id=tenant_id,
        job_id=job_id,
        amount_micros=amount_micros,
        key=key,
        reason=reason,
    )


def _draw_on_hold(
    engine: Engine,
    *,
    kind: str,
    destination: AccountKey,
    tenant_id: str,
    job_id: str,
    amount_micros: int,
    key: str,
    reason: str,
) -> PostedTransaction:
    """Post a capture or release: count it against the job's hold and move it out of held."""
    _validate_request(tenant_id=tenant_id, key=key, amount_micros=amount_micros, job_id=job_id)
    settled_column = holds.c.captured if kind == CAPTURE else holds.c.released

    with engine.begin() as connection:
        posted = _claim_key(
            connection,
            tenant_id=tenant_id,
            key=key,
            kind=kind,
            job_id=job_id,
            amount_micros=amount_micros,
            reason=reason,
        )
        if posted.replayed:
            return posted

        # The guard sits in the UPDATE itself, so two concurrent draws cannot both pass it.
        remaining = holds.c.amount - holds.c.captured - holds.c.released
        updated_job_id = connection.execute(
            sa.update(holds)
            .where(
                holds.c.job_id == job_id,
                holds.c.tenant_id == tenant_id,
                remaining >= amount_micros,
            )
            .values({settled_column: settled_column + amount_micros})
            .returning(holds.c.job_id)
        ).scalar_one_or_none()
        if updated_job_id is None:
            _raise_hold_rejection(
                connection, tenant_id=tenant_id, job_id=job_id, amount_micros=amount_micros
            )

        held = (tenant_id, HELD)
        account_ids = _ensure_accounts(connection, [held, destination])
        moved = _transfer(
            connection,
            transaction_id=posted.transaction_id,
            source_id=account_ids[held],
            destination_id=account_ids[destination],
            amount_micros=amount_micros,
        )
        if not moved:
            # Each hold's remainder is part of the held balance, so this means a bug or a
            # manual edit of the tables.
            raise LedgerError(
                f"held balance of tenant {tenant_id!r} is below what is left of the hold of"
                f" job {job_id!r}; the ledger is inconsistent and needs investigation"
            )

    _log_posted(posted)
    return posted


def _raise_hold_rejection(
    connection: Connection, *, tenant_id: str, job_id: str, amount_micros: int
) -> NoReturn:
    row = connection.execute(
        sa.select(holds).where(holds.c.job_id == job_id, holds.c.tenant_id == tenant_id)
    ).one_or_none()
    if row is None:
        raise UnknownHold(tenant_id=tenant_id, job_id=job_id)
    raise HoldExceeded(
        job_id=job_id,
        requested_micros=amount_micros,
        remaining_micros=row.amount - row.captured - row.released,
    )


def _validate_request(
    *, tenant_id: str, key: str, amount_micros: int, job_id: str | None = None
) -> None:
    if isinstance(amount_micros, bool) or not isinstance(amount_micros, int):
        raise InvalidAmount(amount_micros)
    if not 0 < amount_micros <= MAX_MICROS:
        raise InvalidAmount(amount_micros)

    if not tenant_id:
        raise ValueError("tenant_id must not be empty")
    if tenant_id == PLATFORM_TENANT_ID:
        raise ValueError(
            f"tenant_id {PLATFORM_TENANT_ID!r} is reserved for the platform's own accounts"
        )
    if not key:
        raise ValueError("key must not be empty")
    if job_id is not None and not job_id:
        raise ValueError("job_id must not be empty")


def _claim_key(
    connection: Connection,
    *,
    tenant_id: str,
    key: str,
    kind: str,
    job_id: str | None,
    amount_micros: int,
    reason: str,
) -> PostedTransaction:
    """Insert the transaction row, or return the transaction that already has its key as replayed.

    On PostgreSQL, ON CONFLICT waits for a concurrent insert of the same key to commit or roll
    back, and the following SELECT sees the committed row, so the loser of a race replays the
    winner's result instead of failing.

    Raises:
        IdempotencyConflict: the key is taken by a transaction with other contents.
    """
    transaction_id = connection.execute(
        _dialect_insert(connection, transactions)
        .values(
            tenant_id=tenant_id,
            key=key,
            kind=kind,
            job_id=job_id,
            amount=amount_micros,
            reason=reason,
        )
        .on_conflict_do_nothing(index_elements=[transactions.c.tenant_id, transactions.c.key])
        .returning(transactions.c.id)
    ).scalar_one_or_none()

    if transaction_id is not None:
        return PostedTransaction(
            transaction_id=transaction_id,
            tenant_id=tenant_id,
            key=key,
            kind=kind,
            job_id=job_id,
            amount_micros=amount_micros,
            replayed=False,
        )

    first = connection.execute(
        sa.select(transactions).where(
            transactions.c.tenant_id == tenant_id, transactions.c.key == key
        )
    ).one()
    comparisons = (
        ("kind", first.kind, kind),
        ("job_id", first.job_id, job_id),
        ("amount", first.amount, amount_micros),
    )
    for field, posted_value, requested_value in comparisons:
        if posted_value != requested_value:
            raise IdempotencyConflict(
                tenant_id=tenant_id,
                key=key,
                field=field,
                posted=posted_value,
                requested=requested_value,
            )

    logger.debug(
        "replayed %s transaction %d: tenant=%s job=%s key=%s",
        kind,
        first.id,
        tenant_id,
        job_id,
        key,
    )
    return PostedTransaction(
        transaction_id=first.id,
        tenant_id=tenant_id,
        key=key,
        kind=first.kind,
        job_id=first.job_id,
        amount_micros=first.amount,
        replayed=True,
    )


def _ensure_accounts(connection: Connection, wanted: list[AccountKey]) -> dict[AccountKey, int]:
    """Return the ids of the wanted accounts, creating the ones that do not exist yet."""
    account_ids = _select_account_ids(connection, wanted)
    missing = sorted(set(wanted) - account_ids.keys())
    if not missing:
        return account_ids

    # Sorted, so that two transactions creating the same accounts wait on each other in the
    # same order and cannot deadlock. ON CONFLICT DO NOTHING keeps an account that a concurrent
    # transaction created first, instead of failing on the unique constraint.
    rows = [
        {
            "tenant_id": tenant_id,
            "name": name,
            "balance": 0,
            "allow_negative": name in ACCOUNTS_ALLOWING_NEGATIVE,
        }
        for tenant_id, name in missing
    ]
    connection.execute(
        _dialect_insert(connection, accounts)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[accounts.c.tenant_id, accounts.c.name])
    )
    return _select_account_ids(connection, wanted)


def _select_account_ids(
    connection: Connection, wanted: list[AccountKey]
) -> dict[AccountKey, int]:
    conditions = [
        sa.and_(accounts.c.tenant_id == tenant_id, accounts.c.name == name)
        for tenant_id, name in wanted
    ]
    rows = connection.execute(
        sa.select(accounts.c.id, accounts.c.tenant_id, accounts.c.name).where(sa.or_(*conditions))
    )
    return {(row.tenant_id, row.name): row.id for row in rows}


def _transfer(
    connection: Connection,
    *,
    transaction_id: int,
    source_id: int,
    destination_id: int,
    amount_micros: int,
) -> bool:
    """Debit the source, credit the destination and write one posting for each.

    The two postings are -amount and +amount, so they sum to zero. Accounts are updated in
    order of id, so two concurrent transfers over the same accounts lock them in the same order
    and do not deadlock each other on PostgreSQL.

    Returns:
        False, with nothing debited, when the source does not allow a negative balance and
        its balance is below `amount_micros`. The caller must then roll back, because the
        destination may already be credited.
    """
    legs = sorted([(source_id, -amount_micros), (destination_id, amount_micros)])

    for account_id, amount in legs:
        statement = (
            sa.update(accounts)
            .where(accounts.c.id == account_id)
            .values(balance=accounts.c.balance + amount)
            .returning(accounts.c.balance)
        )
        if amount < 0:
            # The overdraft guard sits in the same statement. The CHECK constraint is the backstop.
            statement = statement.where(
                sa.or_(accounts.c.allow_negative, accounts.c.balance >= -amount)
            )

        balance_after = connection.execute(statement).scalar_one_or_none()
        if balance_after is None:
            return False

        connection.execute(
            sa.insert(postings).values(
                transaction_id=transaction_id,
                account_id=account_id,
                amount=amount,
                balance_after=balance_after,
            )
        )

    return True


def _dialect_insert(connection: Connection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    # ON CONFLICT DO NOTHING is spelled the same on both, but SQLAlchemy offers it only
    # through each dialect's own insert().
    dialect_name = connection.dialect.name
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    if dialect_name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"the ledger supports PostgreSQL and SQLite, not {dialect_name}")


def _log_posted(posted: PostedTransaction) -> None:
    logger.debug(
        "posted %s transaction %d: tenant=%s job=%s key=%s amount_micros=%d",
        posted.kind,
        posted.transaction_id,
        posted.tenant_id,
        posted.job_id,
        posted.key,
        posted.amount_micros,
    )

"""The posting rules as SQLAlchemy Core statements, for SQLite.

Each function follows the PL/pgSQL function of the same name in migration 0002 step by step,
so that both backends keep the same rules, and the property tests run the same cases on both.
The functions run inside the caller's database transaction. They lock the tenant first, with
SELECT ... FOR UPDATE on its available account. SQLite leaves FOR UPDATE out, because its
BEGIN IMMEDIATE already locks the whole database. A rejection returns before anything is
written, so a batch can carry on in the same transaction.

PostgreSQL uses these functions too when the engine has the execution option
`ledger_plpgsql=False`, which tests use to compare the two.
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from ledger.errors import IdempotencyConflict
from ledger.models import (
    AVAILABLE,
    CAPTURE,
    EXPIRE,
    EXPIRED,
    FUNDING,
    GRANT,
    HELD,
    HOLD,
    PLATFORM_TENANT_ID,
    PROVIDER_CHARGE,
    PROVIDER_COST_PREFIX,
    PROVIDER_PAYABLE_PREFIX,
    REFUND,
    RELEASE,
    REVENUE,
    accounts,
    allows_negative,
    hold_lots,
    holds,
    lots,
    postings,
    provider_charges,
    transactions,
)
from ledger.posting import Operation, Outcome


class LedgerInconsistent(RuntimeError):
    """The tables contradict an invariant that the posting rules keep, after a bug or a manual
    edit."""


def post(connection: Connection, operation: Operation, now: datetime) -> Outcome:
    """Apply one validated operation in the caller's transaction.

    Args:
        connection: Connection inside an open transaction.
        operation: The operation, already checked by `validate_operation`.
        now: Current time, which decides whether a lot is past its expiry.
    """
    match operation.kind:
        case "grant":
            return _grant(connection, operation)
        case "hold":
            return _hold(connection, operation, now)
        case "capture":
            return _capture(connection, operation)
        case "release":
            return _release(connection, operation)
        case "refund":
            return _refund(connection, operation)
    raise ValueError(f"cannot post a transaction of kind {operation.kind!r}")


def expire_lot(connection: Connection, lot_id: int, now: datetime) -> Outcome:
    """Expire a lot whose expiry is at or before `now`, as ledger_expire_lot does."""
    tenant_id = connection.execute(
        sa.select(lots.c.tenant_id).where(lots.c.id == lot_id)
    ).scalar_one_or_none()
    if tenant_id is None:
        return Outcome(status="nothing")
    available_id, _ = _lock_tenant(connection, tenant_id, create=False)

    lot = connection.execute(sa.select(lots).where(lots.c.id == lot_id)).one()
    expires_at = as_utc(lot.expires_at)
    if lot.expired_at is not None or expires_at is None or expires_at > now:
        return Outcome(status="nothing")
    connection.execute(sa.update(lots).where(lots.c.id == lot_id).values(expired_at=now))
    if lot.remaining == 0:
        return Outcome(status="nothing")

    assert available_id is not None
    reason = f"unspent credits of grant {lot.transaction_id} expired"
    transaction_id = _insert_transaction(
        connection,
        tenant_id=tenant_id,
        key=f"expire/{lot.transaction_id}",
        kind=EXPIRE,
        job_id=None,
        amount=lot.remaining,
        reason=reason,
    )
    _transfer(
        connection,
        transaction_id,
        available_id,
        _account_id(connection, PLATFORM_TENANT_ID, EXPIRED),
        lot.remaining,
    )
    connection.execute(
        sa.update(lots)
        .where(lots.c.id == lot_id)
        .values(remaining=0, expired=lots.c.expired + lot.remaining)
    )
    return _posted(transaction_id, EXPIRE, None, lot.remaining, reason)


def record_provider_charge(connection: Connection, values: dict) -> tuple[int | None, bool]:
    """Book what a provider charged for one job segment, once per (job, attempt).

    Args:
        connection: Connection inside an open transaction.
        values: A row of `provider_charges` without `transaction_id` and `created_at`.

    Returns:
        The provider_charge transaction id (None when the charged cost is zero) and whether
        the charge had been booked before with the same values.

    Raises:
        IdempotencyConflict: The segment was booked before with different values.
    """
    existing = connection.execute(
        sa.select(provider_charges).where(
            provider_charges.c.job_id == values["job_id"],
            provider_charges.c.attempt == values["attempt"],
        )
    ).one_or_none()
    if existing is not None:
        for name, value in values.items():
            if getattr(existing, name) != value:
                raise IdempotencyConflict(
                    tenant_id=PLATFORM_TENANT_ID,
                    key=_provider_charge_key(values),
                    field=name,
                    posted=getattr(existing, name),
                    requested=value,
                )
        return existing.transaction_id, True

    amount = values["charged_cost"]
    transaction_id = None
    if amount > 0:
        transaction_id = _insert_transaction(
            connection,
            tenant_id=PLATFORM_TENANT_ID,
            key=_provider_charge_key(values),
            kind=PROVIDER_CHARGE,
            job_id=values["job_id"],
            amount=amount,
            reason=f"{values['provider']} instance {values['instance_id']}",
        )
        # Cost before payable: every charge locks the provider's two accounts in this order.
        provider = values["provider"]
        _transfer(
            connection,
            transaction_id,
            _account_id(connection, PLATFORM_TENANT_ID, PROVIDER_COST_PREFIX + provider),
            _account_id(connection, PLATFORM_TENANT_ID, PROVIDER_PAYABLE_PREFIX + provider),
            amount,
        )
    connection.execute(
        sa.insert(provider_charges).values(**values, transaction_id=transaction_id)
    )
    return transaction_id, False


def _provider_charge_key(values: dict) -> str:
    return f"{values['job_id']}/provider-charge/{values['attempt']}"


def as_utc(value: datetime | None) -> datetime | None:
    """Return a stored time as an aware UTC datetime, because SQLite returns them naive."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def _grant(connection: Connection, operation: Operation) -> Outcome:
    available_id, _ = _lock_tenant(connection, operation.tenant_id, create=True)
    existing = _existing(connection, operation)
    if existing is not None:
        return existing

    assert available_id is not None
    transaction_id = _insert_transaction(connection, **_transaction_values(operation))
    _transfer(
        connection,
        transaction_id,
        _account_id(connection, PLATFORM_TENANT_ID, FUNDING),
        available_id,
        operation.amount_micros,
    )
    connection.execute(
        sa.insert(lots).values(
            tenant_id=operation.tenant_id,
            transaction_id=transaction_id,
            amount=operation.amount_micros,
            remaining=operation.amount_micros,
            expired=0,
            expires_at=operation.expires_at,
        )
    )
    return _posted(
        transaction_id,
        GRANT,
        None,
        operation.amount_micros,
        operation.reason,
        operation.expires_at,
    )


def _hold(connection: Connection, operation: Operation, now: datetime) -> Outcome:
    available_id, _ = _lock_tenant(connection, operation.tenant_id, create=False)
    existing = _existing(connection, operation)
    if existing is not None:
        return existing

    held_before = connection.execute(
        sa.select(holds.c.job_id).where(holds.c.job_id == operation.job_id)
    ).first()
    if held_before is not None:
        return Outcome(status="duplicate_hold")

    spendable_lots = connection.execute(
        sa.select(lots.c.id, lots.c.remaining)
        .where(
            lots.c.tenant_id == operation.tenant_id,
            lots.c.remaining > 0,
            sa.or_(lots.c.expires_at.is_(None), lots.c.expires_at > now),
        )
        # Soonest expiry first, never-expiring lots last, as NULLS LAST would order them.
        .order_by(lots.c.expires_at.is_(None), lots.c.expires_at, lots.c.id)
    ).all()
    spendable = sum(lot.remaining for lot in spendable_lots)
    if spendable < operation.amount_micros:
        return Outcome(status="insufficient_funds", limit_micros=spendable)

    inserted = connection.execute(
        _dialect_insert(connection, holds)
        .values(
            job_id=operation.job_id,
            tenant_id=operation.tenant_id,
            amount=operation.amount_micros,
            captured=0,
            released=0,
            refunded=0,
        )
        .on_conflict_do_nothing(index_elements=[holds.c.job_id])
        .returning(holds.c.job_id)
    ).scalar_one_or_none()
    if inserted is None:
        return Outcome(status="duplicate_hold")

    assert available_id is not None
    transaction_id = _insert_transaction(connection, **_transaction_values(operation))
    _transfer(
        connection,
        transaction_id,
        available_id,
        _account_id(connection, operation.tenant_id, HELD),
        operation.amount_micros,
    )

    left = operation.amount_micros
    for lot in spendable_lots:
        take = min(lot.remaining, left)
        connection.execute(
            sa.update(lots).where(lots.c.id == lot.id).values(remaining=lots.c.remaining - take)
        )
        connection.execute(
            sa.insert(hold_lots).values(
                job_id=operation.job_id, lot_id=lot.id, amount=take, captured=0, released=0
            )
        )
        left -= take
        if left == 0:
            break

    return _posted(
        transaction_id, HOLD, operation.job_id, operation.amount_micros, operation.reason
    )


def _capture(connection: Connection, operation: Operation) -> Outcome:
    return _settle(connection, operation, settled_column=holds.c.captured)


def _release(connection: Connection, operation: Operation) -> Outcome:
    return _settle(connection, operation, settled_column=holds.c.released)


def _settle(connection: Connection, operation: Operation, settled_column: sa.Column) -> Outcome:
    """Post a capture or a release against the job's hold and its parts."""
    available_id, _ = _lock_tenant(connection, operation.tenant_id, create=False)
    existing = _existing(connection, operation)
    if existing is not None:
        return existing

    hold_row = _select_hold(connection, operation)
    if hold_row is None:
        return Outcome(status="unknown_hold")
    unsettled = hold_row.amount - hold_row.captured - hold_row.released
    if unsettled < operation.amount_micros:
        return Outcome(status="hold_exceeded", limit_micros=unsettled)

    assert available_id is not None
    transaction_id = _insert_transaction(connection, **_transaction_values(operation))
    connection.execute(
        sa.update(holds)
        .where(holds.c.job_id == operation.job_id)
        .values({settled_column: settled_column + operation.amount_micros})
    )
    held_id = _account_id(connection, operation.tenant_id, HELD)
    if operation.kind == CAPTURE:
        destination_id = _account_id(connection, PLATFORM_TENANT_ID, REVENUE)
    else:
        destination_id = available_id
    _transfer(connection, transaction_id, held_id, destination_id, operation.amount_micros)

    _settle_parts(connection, operation, transaction_id, available_id)
    return _posted(
        transaction_id, operation.kind, operation.job_id, operation.amount_micros, operation.reason
    )


def _settle_parts(
    connection: Connection, operation: Operation, transaction_id: int, available_id: int
) -> None:
    """Spread a capture or release over the hold's parts, and return released credits to lots.

    Captures take the parts in the order the hold drew them (soonest expiry first), releases
    in reverse. Credits released to a lot that has already expired leave again through an
    expire transaction.
    """
    unsettled = hold_lots.c.amount - hold_lots.c.captured - hold_lots.c.released
    statement = (
        sa.select(
            hold_lots.c.lot_id,
            unsettled.label("unsettled"),
            lots.c.transaction_id.label("lot_transaction_id"),
            lots.c.expired_at,
        )
        .join(lots, lots.c.id == hold_lots.c.lot_id)
        .where(hold_lots.c.job_id == operation.job_id, unsettled > 0)
    )
    if operation.kind == CAPTURE:
        statement = statement.order_by(lots.c.expires_at.is_(None), lots.c.expires_at, lots.c.id)
    else:
        statement = statement.order_by(
            lots.c.expires_at.is_(None).desc(), lots.c.expires_at.desc(), lots.c.id.desc()
        )

    left = operation.amount_micros
    for part in connection.execute(statement).all():
        take = min(part.unsettled, left)
        settled_column = hold_lots.c.captured if operation.kind == CAPTURE else hold_lots.c.released
        connection.execute(
            sa.update(hold_lots)
            .where(hold_lots.c.job_id == operation.job_id, hold_lots.c.lot_id == part.lot_id)
            .values({settled_column: settled_column + take})
        )
        if operation.kind == RELEASE:
            _return_to_lot(connection, operation, transaction_id, available_id, part, take)

        left -= take
        if left == 0:
            return

    raise LedgerInconsistent(
        f"ledger inconsistent: the parts of the hold of job {operation.job_id!r} have less left"
        " than the hold itself"
    )


def _return_to_lot(
    connection: Connection,
    operation: Operation,
    release_id: int,
    available_id: int,
    part: sa.Row,
    amount: int,
) -> None:
    if part.expired_at is None:
        connection.execute(
            sa.update(lots)
            .where(lots.c.id == part.lot_id)
            .values(remaining=lots.c.remaining + amount)
        )
        return

    expire_id = _insert_transaction(
        connection,
        tenant_id=operation.tenant_id,
        key=f"expire/{part.lot_transaction_id}/{release_id}",
        kind=EXPIRE,
        job_id=operation.job_id,
        amount=amount,
        reason=(
            f"credits of expired grant {part.lot_transaction_id} returned by release {release_id}"
        ),
    )
    _transfer(
        connection,
        expire_id,
        available_id,
        _account_id(connection, PLATFORM_TENANT_ID, EXPIRED),
        amount,
    )
    connection.execute(
        sa.update(lots).where(lots.c.id == part.lot_id).values(expired=lots.c.expired + amount)
    )


def _refund(connection: Connection, operation: Operation) -> Outcome:
    available_id, _ = _lock_tenant(connection, operation.tenant_id, create=False)
    existing = _existing(connection, operation)
    if existing is not None:
        return existing

    hold_row = _select_hold(connection, operation)
    if hold_row is None:
        return Outcome(status="unknown_hold")
    refundable = hold_row.captured - hold_row.refunded
    if refundable < operation.amount_micros:
        return Outcome(status="refund_exceeded", limit_micros=refundable)

    assert available_id is not None
    transaction_id = _insert_transaction(connection, **_transaction_values(operation))
    connection.execute(
        sa.update(holds)
        .where(holds.c.job_id == operation.job_id)
        .values(refunded=holds.c.refunded + operation.amount_micros)
    )
    _transfer(
        connection,
        transaction_id,
        _account_id(connection, PLATFORM_TENANT_ID, REVENUE),
        available_id,
        operation.amount_micros,
    )
    connection.execute(
        sa.insert(lots).values(
            tenant_id=operation.tenant_id,
            transaction_id=transaction_id,
            amount=operation.amount_micros,
            remaining=operation.amount_micros,
            expired=0,
            expires_at=None,
        )
    )
    return _posted(
        transaction_id, REFUND, operation.job_id, operation.amount_micros, operation.reason
    )


def _lock_tenant(
    connection: Connection, tenant_id: str, *, create: bool
) -> tuple[int | None, int | None]:
    """Lock the tenant's available account and return its id and balance, or (None, None)."""
    statement = (
        sa.select(accounts.c.id, accounts.c.balance)
        .where(accounts.c.tenant_id == tenant_id, accounts.c.name == AVAILABLE)
        .with_for_update()
    )
    row = connection.execute(statement).one_or_none()
    if row is None and create:
        # ON CONFLICT DO NOTHING keeps the accounts that a concurrent grant created first.
        connection.execute(
            _dialect_insert(connection, accounts)
            .values(
                [
                    {"tenant_id": tenant_id, "name": name, "balance": 0, "allow_negative": False}
                    for name in (AVAILABLE, HELD)
                ]
            )
            .on_conflict_do_nothing(index_elements=[accounts.c.tenant_id, accounts.c.name])
        )
        row = connection.execute(statement).one_or_none()
    if row is None:
        return None, None
    return row.id, row.balance


def _account_id(connection: Connection, tenant_id: str, name: str) -> int:
    statement = sa.select(accounts.c.id).where(
        accounts.c.tenant_id == tenant_id, accounts.c.name == name
    )
    account_id = connection.execute(statement).scalar_one_or_none()
    if account_id is not None:
        return account_id

    connection.execute(
        _dialect_insert(connection, accounts)
        .values(
            tenant_id=tenant_id,
            name=name,
            balance=0,
            allow_negative=allows_negative(name),
        )
        .on_conflict_do_nothing(index_elements=[accounts.c.tenant_id, accounts.c.name])
    )
    return connection.execute(statement).scalar_one()


def _existing(connection: Connection, operation: Operation) -> Outcome | None:
    row = connection.execute(
        sa.select(
            transactions.c.id,
            transactions.c.kind,
            transactions.c.job_id,
            transactions.c.amount,
            transactions.c.reason,
            lots.c.expires_at,
        )
        .outerjoin(lots, lots.c.transaction_id == transactions.c.id)
        .where(
            transactions.c.tenant_id == operation.tenant_id,
            transactions.c.key == operation.key,
        )
    ).one_or_none()
    if row is None:
        return None
    return Outcome(
        status="existing",
        transaction_id=row.id,
        kind=row.kind,
        job_id=row.job_id,
        amount=row.amount,
        reason=row.reason,
        expires_at=as_utc(row.expires_at),
    )


def _select_hold(connection: Connection, operation: Operation) -> sa.Row | None:
    return connection.execute(
        sa.select(holds).where(
            holds.c.job_id == operation.job_id, holds.c.tenant_id == operation.tenant_id
        )
    ).one_or_none()


def _transaction_values(operation: Operation) -> dict:
    return {
        "tenant_id": operation.tenant_id,
        "key": operation.key,
        "kind": operation.kind,
        "job_id": operation.job_id,
        "amount": operation.amount_micros,
        "reason": operation.reason,
    }


def _insert_transaction(
    connection: Connection,
    *,
    tenant_id: str,
    key: str,
    kind: str,
    job_id: str | None,
    amount: int,
    reason: str,
) -> int:
    return connection.execute(
        sa.insert(transactions)
        .values(
            tenant_id=tenant_id, key=key, kind=kind, job_id=job_id, amount=amount, reason=reason
        )
        .returning(transactions.c.id)
    ).scalar_one()


def _transfer(
    connection: Connection, transaction_id: int, source_id: int, destination_id: int, amount: int
) -> None:
    """Debit the source, credit the destination, and write a posting with each new balance.

    The two postings are -amount and +amount, so they sum to zero. A debit below zero on an
    account that must not go negative fails on its CHECK constraint. The callers check the
    balance first, so such a failure means a bug.
    """
    for account_id, delta in ((source_id, -amount), (destination_id, amount)):
        balance_after = connection.execute(
            sa.update(accounts)
            .where(accounts.c.id == account_id)
            .values(balance=accounts.c.balance + delta)
            .returning(accounts.c.balance)
        ).scalar_one()
        connection.execute(
            sa.insert(postings).values(
                transaction_id=transaction_id,
                account_id=account_id,
                amount=delta,
                balance_after=balance_after,
            )
        )


def _posted(
    transaction_id: int,
    kind: str,
    job_id: str | None,
    amount: int,
    reason: str,
    expires_at: datetime | None = None,
) -> Outcome:
    return Outcome(
        status="posted",
        transaction_id=transaction_id,
        kind=kind,
        job_id=job_id,
        amount=amount,
        reason=reason,
        expires_at=expires_at,
    )


def _dialect_insert(connection: Connection, table: sa.Table) -> postgresql.Insert | sqlite.Insert:
    # ON CONFLICT DO NOTHING is spelled the same on both, but SQLAlchemy offers it only
    # through each dialect's own insert().
    dialect_name = connection.dialect.name
    if dialect_name == "postgresql":
        return postgresql.insert(table)
    if dialect_name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"the ledger supports PostgreSQL and SQLite, not {dialect_name}")

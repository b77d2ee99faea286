"""A tenant's statement: its transactions, newest first, page by page.

Pages are cut by transaction id (keyset pagination), and the cursor is the last id of a page,
encoded so that callers treat it as opaque. A tenant's transactions get their ids under the
tenant's lock and commit in id order. So a transaction committed while a caller pages through
the statement has a higher id than every entry already listed. It shows up at the top of a new
first page, and never shifts, repeats or hides an older entry.
"""

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from ledger.db import run_with_reconnect
from ledger.models import AVAILABLE, HELD, accounts, postings, transactions
from ledger.posting_python import as_utc

MAX_STATEMENT_LIMIT = 1000
"""Largest page size that `get_statement` accepts."""

CURSOR_PREFIX = "v1:"


@dataclass(frozen=True)
class StatementEntry:
    """One transaction on a tenant's statement. Amounts are in micro-credits."""

    transaction_id: int
    """Id of the transaction."""

    key: str
    """Idempotency key of the transaction; `expire/...` for the ledger's own expiries."""

    created_at: datetime
    """When the transaction was posted, in UTC."""

    kind: str
    """One of "grant", "hold", "capture", "release", "refund", "expire"."""

    job_id: str | None
    """Job of a hold, capture, release or refund, or of the release that expired credits;
    None for a grant and for the expiry of a grant's unspent credits."""

    amount_micros: int
    """Amount of the transaction; always positive."""

    available_change_micros: int
    """Change of the available balance: positive for a grant, release or refund, negative for
    a hold or expiry, 0 for a capture."""

    held_change_micros: int
    """Change of the held balance: positive for a hold, negative for a capture or release,
    0 otherwise."""

    reason: str
    """Free text stored with the transaction."""

    available_after_micros: int
    """Available balance right after the transaction."""


@dataclass(frozen=True)
class StatementPage:
    """One page of a tenant's statement."""

    entries: list[StatementEntry]
    """Entries, newest first; at most the requested limit."""

    next_cursor: str | None
    """Cursor of the next, older page; None when this page is the last."""


def get_statement(
    engine: Engine, tenant_id: str, *, limit: int = 50, cursor: str | None = None
) -> StatementPage:
    """Read one page of a tenant's statement, newest transaction first.

    Args:
        engine: Ledger database engine.
        tenant_id: Tenant whose statement to read. An unknown tenant has an empty statement.
        limit: Most entries on the page, from 1 to `MAX_STATEMENT_LIMIT`. Default 50.
        cursor: `next_cursor` of the previous page, or None for the newest page.

    Returns:
        The page. Its entries come from one consistent snapshot of the database.

    Raises:
        ValueError: `limit` is out of range, or `cursor` is not one that this function
            returned.
    """
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"limit must be an int, not {type(limit).__name__}")
    if not 1 <= limit <= MAX_STATEMENT_LIMIT:
        raise ValueError(f"limit must be from 1 to {MAX_STATEMENT_LIMIT}, got {limit}")
    before_id = _decode_cursor(cursor) if cursor is not None else None

    def read() -> StatementPage:
        with engine.connect() as connection, connection.begin():
            return _read_page(connection, tenant_id, limit, before_id)

    return run_with_reconnect(engine, read)


def _read_page(
    connection: Connection, tenant_id: str, limit: int, before_id: int | None
) -> StatementPage:
    available = _account_id_subquery(tenant_id, AVAILABLE)
    held = _account_id_subquery(tenant_id, HELD)
    available_posting = postings.alias("available_posting")
    held_posting = postings.alias("held_posting")

    statement = (
        sa.select(
            transactions.c.id,
            transactions.c.key,
            transactions.c.created_at,
            transactions.c.kind,
            transactions.c.job_id,
            transactions.c.amount,
            transactions.c.reason,
            available_posting.c.amount.label("available_change"),
            available_posting.c.balance_after.label("available_after"),
            held_posting.c.id.label("held_posting_id"),
            held_posting.c.amount.label("held_change"),
        )
        .select_from(transactions)
        .outerjoin(
            available_posting,
            sa.and_(
                available_posting.c.transaction_id == transactions.c.id,
                available_posting.c.account_id == available,
            ),
        )
        .outerjoin(
            held_posting,
            sa.and_(
                held_posting.c.transaction_id == transactions.c.id,
                held_posting.c.account_id == held,
            ),
        )
        .where(transactions.c.tenant_id == tenant_id)
        .order_by(transactions.c.id.desc())
        # One row more than the page shows whether an older page exists.
        .limit(limit + 1)
    )
    if before_id is not None:
        statement = statement.where(transactions.c.id < before_id)
    rows = connection.execute(statement).all()

    page_rows = rows[:limit]
    available_after = _available_after(connection, tenant_id, page_rows)
    entries = [
        StatementEntry(
            transaction_id=row.id,
            key=row.key,
            created_at=as_utc(row.created_at),
            kind=row.kind,
            job_id=row.job_id,
            amount_micros=row.amount,
            available_change_micros=row.available_change or 0,
            held_change_micros=row.held_change or 0,
            reason=row.reason,
            available_after_micros=balance,
        )
        for row, balance in zip(page_rows, available_after, strict=True)
    ]

    next_cursor = _encode_cursor(page_rows[-1].id) if len(rows) > limit else None
    return StatementPage(entries=entries, next_cursor=next_cursor)


def _available_after(connection: Connection, tenant_id: str, rows: list[sa.Row]) -> list[int]:
    """Return the available balance after each row's transaction, rows being newest first.

    A transaction that posted to the available account carries the balance in its posting. A
    capture does not touch that account, so its balance is the one after the transaction
    before it: the next older row, or for the oldest rows of the page, the last available
    posting before the capture's own postings. Posting ids of a tenant's accounts increase in
    transaction order, because both are assigned under the tenant's lock.
    """
    balances: list[int] = [0] * len(rows)
    carried: int | None = None
    for index in range(len(rows) - 1, -1, -1):
        row = rows[index]
        if row.available_after is not None:
            carried = row.available_after
        elif carried is None:
            carried = _available_before_posting(connection, tenant_id, row.held_posting_id)
        balances[index] = carried
    return balances


def _available_before_posting(
    connection: Connection, tenant_id: str, posting_id: int | None
) -> int:
    statement = (
        sa.select(postings.c.balance_after)
        .where(postings.c.account_id == _account_id_subquery(tenant_id, AVAILABLE))
        .order_by(postings.c.id.desc())
        .limit(1)
    )
    if posting_id is not None:
        statement = statement.where(postings.c.id < posting_id)
    balance = connection.execute(statement).scalar_one_or_none()
    return balance if balance is not None else 0


def _account_id_subquery(tenant_id: str, name: str) -> sa.ScalarSelect[int]:
    return (
        sa.select(accounts.c.id)
        .where(accounts.c.tenant_id == tenant_id, accounts.c.name == name)
        .scalar_subquery()
    )


def _encode_cursor(transaction_id: int) -> str:
    raw = f"{CURSOR_PREFIX}{transaction_id}".encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> int:
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        text = base64.urlsafe_b64decode(padded.encode()).decode()
    except (binascii.Error, UnicodeError, ValueError):
        raise ValueError(f"invalid statement cursor {cursor!r}") from None
    if not text.startswith(CURSOR_PREFIX) or not text[len(CURSOR_PREFIX) :].isdigit():
        raise ValueError(f"invalid statement cursor {cursor!r}")
    return int(text[len(CURSOR_PREFIX) :])

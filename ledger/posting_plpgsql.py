"""Posting on PostgreSQL through the PL/pgSQL functions that migration 0002 installs.

One operation is one `SELECT ... FROM ledger_post(...)`, and a batch is one
`SELECT ... FROM ledger_post_batch(...)` with an array per field. The functions lock the
tenant, check idempotency and the balance, and write the transaction, its postings, the hold
and the lots. The call runs in autocommit mode, so it is its own database transaction and the
commit takes no second round trip.

The calls go straight to the psycopg connection under the SQLAlchemy connection: SQLAlchemy's
isolation-level switch and result objects cost about as much client CPU as the rest of the
call. Database errors are raised as SQLAlchemy exceptions all the same.
"""

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import psycopg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.db import run_with_reconnect
from ledger.posting import Operation, Outcome

OUTCOME_COLUMNS = "status, transaction_id, kind, job_id, amount, reason, expires_at, limit_micros"

POST_SQL = f"SELECT {OUTCOME_COLUMNS} FROM ledger_post(%s, %s, %s, %s, %s, %s, %s)"

# WITH ORDINALITY numbers the rows in the order the function returned them, which is the
# order of the operations.
POST_BATCH_SQL = (
    f"SELECT {OUTCOME_COLUMNS} FROM ledger_post_batch("
    "%s::text[], %s::text[], %s::text[], %s::text[], %s::bigint[], %s::text[],"
    " %s::timestamptz[]) WITH ORDINALITY ORDER BY ordinality"
)

EXPIRE_LOT_SQL = f"SELECT {OUTCOME_COLUMNS} FROM ledger_expire_lot(%s, %s)"


def post(engine: Engine, operation: Operation) -> Outcome:
    """Post one validated operation with one call of `ledger_post`."""
    parameters = (
        operation.kind,
        operation.tenant_id,
        operation.key,
        operation.job_id,
        operation.amount_micros,
        operation.reason,
        operation.expires_at,
    )
    (row,) = _call(engine, POST_SQL, parameters)
    return Outcome(*row)


def post_many(engine: Engine, operations: Sequence[Operation]) -> list[Outcome]:
    """Post validated operations in order with one call of `ledger_post_batch`."""
    parameters = (
        [operation.kind for operation in operations],
        [operation.tenant_id for operation in operations],
        [operation.key for operation in operations],
        [operation.job_id for operation in operations],
        [operation.amount_micros for operation in operations],
        [operation.reason for operation in operations],
        [operation.expires_at for operation in operations],
    )
    return [Outcome(*row) for row in _call(engine, POST_BATCH_SQL, parameters)]


def expire_lot(engine: Engine, lot_id: int, now: datetime) -> Outcome:
    """Expire one lot with one call of `ledger_expire_lot`."""
    (row,) = _call(engine, EXPIRE_LOT_SQL, (lot_id, now))
    return Outcome(*row)


def _call(engine: Engine, sql: str, parameters: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    """Run one statement in autocommit mode and return its rows, reconnecting if needed.

    Repeating the statement is safe because every posting carries its key and an expiry
    checks the lot's state first.
    """
    return run_with_reconnect(engine, lambda: _call_once(engine, sql, parameters))


def _call_once(engine: Engine, sql: str, parameters: tuple[Any, ...]) -> list[tuple[Any, ...]]:
    with engine.connect() as connection:
        driver_connection = connection.connection.driver_connection
        assert isinstance(driver_connection, psycopg.Connection)
        driver_connection.autocommit = True
        try:
            return driver_connection.execute(sql, parameters).fetchall()
        except psycopg.Error as error:
            if driver_connection.broken:
                # A statement through SQLAlchemy on the dead connection makes SQLAlchemy
                # discard it and every connection pooled before it, and raise with
                # connection_invalidated set, as after a failure of its own statements.
                connection.exec_driver_sql("SELECT 1")
            raise sa.exc.DBAPIError.instance(sql, parameters, error, psycopg.Error) from error
        finally:
            if not driver_connection.closed:
                # The pool hands the connection to code that expects transactions again.
                driver_connection.autocommit = False

"""Engine for the ledger database: PostgreSQL through psycopg 3, or a SQLite file in dev."""

import logging
import sqlite3
from collections.abc import Callable
from typing import TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

logger = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_SECONDS = 30
"""Seconds that a SQLite connection waits for another writer before it fails as locked."""

RECONNECT_ATTEMPTS = 3
"""Attempts of a ledger call whose pooled connection turns out to be dropped."""

T = TypeVar("T")


def normalize_database_url(database_url: str) -> URL:
    """Parse a database URL and pick the psycopg 3 driver for PostgreSQL.

    `postgres://` and `postgresql://` URLs, as hosting platforms hand them out, select the
    psycopg2 driver by default, which this project does not install.

    Raises:
        sqlalchemy.exc.ArgumentError: `database_url` is not a valid URL.
    """
    url = sa.make_url(database_url)
    if url.drivername in ("postgres", "postgresql"):
        url = url.set(drivername="postgresql+psycopg")
    return url


def create_ledger_engine(
    database_url: str, *, pool_size: int = 10, max_overflow: int = 20, pre_ping: bool = False
) -> Engine:
    """Create an engine for the ledger database.

    On SQLite, every connection turns on foreign keys and write-ahead logging, waits up to
    `SQLITE_BUSY_TIMEOUT_SECONDS` for a lock, and starts each transaction with
    `BEGIN IMMEDIATE`. Taking the write lock up front makes a second writer wait up to the busy
    timeout, instead of failing at once with "database is locked" when both try to upgrade a
    read lock. Reads take that lock too, which a dev database can afford.

    Args:
        database_url: SQLAlchemy URL, for example
            `postgresql+psycopg://user@host/db` or `sqlite:////abs/path/ledger.db`.
        pool_size: Connections kept open on PostgreSQL.
        max_overflow: Connections opened beyond `pool_size` under load on PostgreSQL.
        pre_ping: Whether the pool tests each PostgreSQL connection with a round trip before
            handing it out. Off by default, because every public function of the ledger
            retries on a dropped connection itself (see `run_with_reconnect`), and the ping
            would double the round trips of each posting. Turn it on for an engine that
            other code uses directly.

    Returns:
        The engine. Dispose of it when done.
    """
    url = normalize_database_url(database_url)

    if url.get_backend_name() == "sqlite":
        engine = sa.create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})
        sa.event.listen(engine, "connect", _configure_sqlite_connection)
        sa.event.listen(engine, "begin", _begin_sqlite_immediate)
    else:
        engine = sa.create_engine(
            url, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=pre_ping
        )

    logger.debug("created ledger engine for %s", url.render_as_string(hide_password=True))
    return engine


def _configure_sqlite_connection(dbapi_connection: sqlite3.Connection, _record: object) -> None:
    # Stops the sqlite3 module from opening transactions itself with a plain BEGIN, so that
    # `_begin_sqlite_immediate` can open them with BEGIN IMMEDIATE.
    dbapi_connection.isolation_level = None

    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_SECONDS * 1000}")
    finally:
        cursor.close()


def _begin_sqlite_immediate(connection: sa.Connection) -> None:
    connection.exec_driver_sql("BEGIN IMMEDIATE")


def disable_sqlite_foreign_keys(connection: sa.Connection) -> None:
    """Turn off foreign key enforcement on a SQLite connection that has no open transaction.

    SQLite ignores `PRAGMA foreign_keys` inside a transaction, and every statement through
    this module's engines opens one with BEGIN IMMEDIATE, so the pragma goes to the driver
    connection directly.
    """
    connection.connection.driver_connection.execute("PRAGMA foreign_keys = OFF")


def run_with_reconnect(engine: Engine, work: Callable[[], T]) -> T:
    """Run `work`, and run it again if it failed on a connection that had been dropped.

    A pooled connection is dropped when the database restarts or a proxy closes idle
    connections, and the pool finds out only on the next use. `work` must be safe to repeat:
    a read, or a posting whose key makes a second attempt replay the first. When SQLAlchemy
    detects a dropped connection, it discards it and every connection pooled before it, so the
    next attempt connects anew.

    Raises:
        sqlalchemy.exc.DBAPIError: `work` failed for another reason, or on a dropped connection
            `RECONNECT_ATTEMPTS` times.
    """
    for attempt in range(1, RECONNECT_ATTEMPTS + 1):
        try:
            return work()
        except sa.exc.DBAPIError as error:
            if not error.connection_invalidated or attempt == RECONNECT_ATTEMPTS:
                raise
            logger.warning(
                "ledger database connection was dropped (%s); retrying, attempt %d of %d",
                error.orig,
                attempt + 1,
                RECONNECT_ATTEMPTS,
            )
    raise AssertionError("unreachable: the last attempt returns or raises")

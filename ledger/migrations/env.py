"""Alembic environment of the ledger.

`ledger.schema.upgrade` passes an open connection in `config.attributes["connection"]`. The
`alembic` command line (with `-c ledger/alembic.ini`) has none, so this module then connects
to the URL in `DATABASE_URL` or `CAC_DATABASE_URL`, as the settings do.
"""

import os

from alembic import context
from sqlalchemy import Connection

from ledger.db import create_ledger_engine, disable_sqlite_foreign_keys, normalize_database_url
from ledger.models import metadata

config = context.config


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL") or os.environ.get("CAC_DATABASE_URL")
    if not url:
        raise RuntimeError(
            "no ledger database configured: set DATABASE_URL to a SQLAlchemy URL, for example"
            " sqlite:////abs/path/ledger.db"
        )
    return url


def _run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        # SQLite can change a table only by copying it, which batch mode does.
        render_as_batch=connection.dialect.name == "sqlite",
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_offline() -> None:
    """Print the migration SQL instead of running it, for `alembic upgrade --sql`."""
    context.configure(
        url=normalize_database_url(_database_url()),
        target_metadata=metadata,
        literal_binds=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    """Run the migrations on the caller's connection, or on a new one to `DATABASE_URL`."""
    connection = config.attributes.get("connection")
    if connection is not None:
        _run_migrations(connection)
        return

    engine = create_ledger_engine(_database_url(), pool_size=1, max_overflow=0)
    try:
        with engine.connect() as new_connection:
            # See ledger.schema.upgrade for why SQLite migrations run without foreign keys.
            if new_connection.dialect.name == "sqlite":
                disable_sqlite_foreign_keys(new_connection)
            _run_migrations(new_connection)
            new_connection.commit()
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()

"""Creation and upgrade of the ledger schema through its Alembic migrations."""

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from ledger.db import create_ledger_engine, disable_sqlite_foreign_keys

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

MIGRATION_LOCK_KEY = 0x6C6564676572
"""PostgreSQL advisory lock key that serializes concurrent upgrades (the bytes of "ledger")."""


def upgrade(database_url: str) -> None:
    """Migrate the ledger database at `database_url` to the newest schema.

    Running it on an up-to-date database changes nothing. Concurrent calls are serialized:
    on PostgreSQL by a transaction-scoped advisory lock, on SQLite by the write lock that
    `BEGIN IMMEDIATE` takes. The whole upgrade is one transaction, so a failed migration leaves
    the schema as it was.

    On SQLite, foreign keys are off during the upgrade, because a migration that changes a
    constraint copies the table, drops the original and renames the copy, and with foreign keys
    on the drop fails while other tables refer to it. Migrations that copy tables check the
    foreign keys themselves before they end.

    Args:
        database_url: SQLAlchemy URL of the ledger database, which must already exist (a SQLite
            file is created, but not its directory).
    """
    engine = create_ledger_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                disable_sqlite_foreign_keys(connection)

            with connection.begin():
                if connection.dialect.name == "postgresql":
                    connection.execute(
                        sa.text("SELECT pg_advisory_xact_lock(:key)"),
                        {"key": MIGRATION_LOCK_KEY},
                    )

                config = Config()
                # Config options go through configparser interpolation, which treats %
                # specially.
                config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
                config.attributes["connection"] = connection
                command.upgrade(config, "head")
    finally:
        # Also closes the SQLite connection whose foreign keys were turned off.
        engine.dispose()

    logger.info("ledger schema is at the newest revision")

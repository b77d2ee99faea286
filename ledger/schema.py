"""Creation and upgrade of the ledger schema through its Alembic migrations."""

import logging
from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config

from ledger.db import create_ledger_engine

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"

MIGRATION_LOCK_KEY = 0x6C6564676572
"""PostgreSQL advisory lock key that serializes concurrent upgrades (the bytes of "ledger")."""


def upgrade(database_url: str) -> None:
    """Migrate the ledger database at `database_url` to the newest schema.

    Running it on an up-to-date database changes nothing. Concurrent calls are serialized:
    on PostgreSQL by a transaction-scoped advisory lock, on SQLite by the write lock that
    `BEGIN IMMEDIATE` takes. The whole upgrade is one transaction on PostgreSQL, where DDL is
    transactional, so a failed migration leaves the schema as it was.

    Args:
        database_url: SQLAlchemy URL of the ledger database, which must already exist (a SQLite
            file is created, but not its directory).
    """
    engine = create_ledger_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(
                    sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK_KEY}
                )

            config = Config()
            # Config options go through configparser interpolation, which treats % specially.
            config.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()

    logger.info("ledger schema is at the newest revision")

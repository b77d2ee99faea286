"""`cac ledger verify`: audit the ledger database directly, without changing it.

The engine is read-only: on PostgreSQL every transaction is READ ONLY, and a SQLite file is
opened with `mode=ro`, so the audit cannot write to the ledger even by mistake. SQLite may
still create the empty `-wal` and `-shm` side files of a WAL database next to it.

The command prints every check with the number of rows it examined and every mismatch. It
exits 0 when the ledger is consistent and 1 otherwise, also when the database cannot be read.
"""

import argparse
import sys
from pathlib import Path
from urllib.parse import quote

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from config import Settings
from ledger.db import create_ledger_engine, normalize_database_url
from ledger.verify import verify_ledger


class LedgerNotFound(Exception):
    """The SQLite file that the database URL names does not exist."""


def add_ledger_commands(commands: argparse._SubParsersAction) -> None:
    """Add `cac ledger verify` to the `cac` parser's subcommands."""
    ledger_command = commands.add_parser("ledger", help="operator commands on the ledger")
    actions = ledger_command.add_subparsers(dest="ledger_command", required=True, metavar="ACTION")
    verify = actions.add_parser(
        "verify",
        help="check every invariant of the ledger in DATABASE_URL, read-only; exit 1 on any"
        " mismatch",
    )
    verify.set_defaults(handler=run_verify)


def run_verify(args: argparse.Namespace, settings: Settings) -> int:
    """Verify the ledger in `settings.database_url`, print the report, and return the exit code."""
    url = normalize_database_url(settings.database_url)
    shown_url = url.render_as_string(hide_password=True)
    print(f"verifying the ledger at {shown_url}")

    try:
        engine = create_read_only_engine(settings.database_url)
    except LedgerNotFound as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    try:
        report = verify_ledger(engine)
    except sa.exc.SQLAlchemyError as error:
        cause = getattr(error, "orig", None) or error
        print(
            f"error: cannot read the ledger at {shown_url}: {cause}; check DATABASE_URL and"
            " that the schema was created (`cac dev` or `cac api` creates it)",
            file=sys.stderr,
        )
        return 1
    finally:
        engine.dispose()

    for line in report.lines():
        print(line)
    return 0 if report.ok else 1


def create_read_only_engine(database_url: str) -> Engine:
    """Create a ledger engine that cannot write to the database.

    Raises:
        LedgerNotFound: the URL names a SQLite file that does not exist, which a plain engine
            would create empty.
    """
    url = normalize_database_url(database_url)
    if url.get_backend_name() != "sqlite":
        return create_ledger_engine(database_url, pool_size=1, max_overflow=0).execution_options(
            postgresql_readonly=True
        )

    if not url.database or url.database == ":memory:":
        return create_ledger_engine(database_url)
    path = Path(url.database)
    if not path.is_file():
        raise LedgerNotFound(
            f"no ledger database at {path.resolve()}; check DATABASE_URL or CAC_DATA_DIR"
        )
    # SQLite reads `file:` URIs only with `uri=true`; mode=ro opens the file read-only.
    read_only = url.set(
        database=f"file:{quote(str(path.resolve()))}", query={"mode": "ro", "uri": "true"}
    )
    return create_ledger_engine(read_only.render_as_string(hide_password=False))

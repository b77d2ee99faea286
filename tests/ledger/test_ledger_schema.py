import threading

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext

from ledger import (
    HoldExceeded,
    IdempotencyConflict,
    InsufficientFunds,
    PlatformBalances,
    TenantBalances,
    capture,
    create_ledger_engine,
    get_balances,
    get_hold,
    get_platform_balances,
    grant,
    hold,
    refund,
    release,
    upgrade,
    verify_ledger,
)
from ledger.db import disable_sqlite_foreign_keys
from ledger.models import metadata
from ledger.schema import MIGRATIONS_DIR
from tests.conftest import fresh_pg_database

HEAD_REVISION = "0004"


def schema_differences(database_url):
    engine = create_ledger_engine(database_url)
    try:
        with engine.connect() as connection:
            return compare_metadata(MigrationContext.configure(connection), metadata)
    finally:
        engine.dispose()


def current_revision(database_url):
    engine = create_ledger_engine(database_url)
    try:
        with engine.connect() as connection:
            return MigrationContext.configure(connection).get_current_revision()
    finally:
        engine.dispose()


@pytest.fixture
def sqlite_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    upgrade(url)
    return url


def test_migration_matches_models_on_postgres(pg_url):
    assert schema_differences(pg_url) == []
    assert current_revision(pg_url) == HEAD_REVISION


def test_migration_matches_models_on_sqlite(sqlite_url):
    assert schema_differences(sqlite_url) == []
    assert current_revision(sqlite_url) == HEAD_REVISION


def test_check_constraints_have_model_names_on_postgres(pg_url):
    # compare_metadata does not compare CHECK constraints, so their names are checked here.
    expected = {
        constraint.name
        for table in metadata.tables.values()
        for constraint in table.constraints
        if isinstance(constraint, sa.CheckConstraint)
    }
    engine = create_ledger_engine(pg_url)
    try:
        with engine.connect() as connection:
            names = connection.exec_driver_sql(
                "SELECT conname FROM pg_constraint WHERE contype = 'c'"
                " AND conrelid::regclass::text = ANY(%s)",
                (list(metadata.tables),),
            ).scalars()
            actual = set(names)
    finally:
        engine.dispose()

    assert actual == expected


def test_upgrade_twice_changes_nothing(pg_url, sqlite_url):
    upgrade(pg_url)
    upgrade(sqlite_url)

    assert current_revision(pg_url) == HEAD_REVISION
    assert current_revision(sqlite_url) == HEAD_REVISION


def test_concurrent_upgrades_of_new_postgres_database(empty_pg_url):
    barrier = threading.Barrier(4)
    errors = []

    def run_upgrade():
        barrier.wait(timeout=10)
        try:
            upgrade(empty_pg_url)
        except Exception as error:  # noqa: BLE001 - collected for the assert below
            errors.append(error)

    threads = [threading.Thread(target=run_upgrade) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert errors == []
    assert current_revision(empty_pg_url) == HEAD_REVISION


def test_upgrade_accepts_plain_postgresql_url(empty_pg_url):
    plain_url = empty_pg_url.replace("postgresql+psycopg://", "postgresql://", 1)

    upgrade(plain_url)

    assert current_revision(empty_pg_url) == HEAD_REVISION


def test_basic_flow_on_sqlite(sqlite_url, ledger_inconsistencies):
    engine = create_ledger_engine(sqlite_url)
    try:
        grant(engine, tenant_id="acme", amount_micros=100, key="g")
        hold(engine, tenant_id="acme", job_id="j", amount_micros=60, key="h")
        capture(engine, tenant_id="acme", job_id="j", amount_micros=25, key="c")
        replayed = capture(engine, tenant_id="acme", job_id="j", amount_micros=25, key="c")
        release(engine, tenant_id="acme", job_id="j", amount_micros=35, key="r")

        assert replayed.replayed is True
        assert get_balances(engine, "acme") == TenantBalances(
            available_micros=75, held_micros=0, spent_micros=25
        )
        assert get_platform_balances(engine) == PlatformBalances(
            funding_micros=-100, revenue_micros=25
        )
        assert get_hold(engine, "j").remaining_micros == 0
        with pytest.raises(IdempotencyConflict, match="amount"):
            grant(engine, tenant_id="acme", amount_micros=101, key="g")
        with pytest.raises(HoldExceeded):
            release(engine, tenant_id="acme", job_id="j", amount_micros=1, key="r2")
        with pytest.raises(InsufficientFunds):
            hold(engine, tenant_id="acme", job_id="j2", amount_micros=76, key="h2")
        assert ledger_inconsistencies(engine) == []
    finally:
        engine.dispose()


def test_concurrent_holds_on_sqlite_never_overdraw(sqlite_url, ledger_inconsistencies):
    engine = create_ledger_engine(sqlite_url)
    barrier = threading.Barrier(20)
    outcomes = []

    def hold_job(index):
        barrier.wait(timeout=10)
        try:
            hold(engine, tenant_id="acme", job_id=f"j{index}", amount_micros=10, key=f"h{index}")
            outcomes.append("held")
        except InsufficientFunds:
            outcomes.append("insufficient")

    try:
        grant(engine, tenant_id="acme", amount_micros=50, key="g")
        threads = [threading.Thread(target=hold_job, args=(index,)) for index in range(20)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)

        assert sorted(outcomes) == ["held"] * 5 + ["insufficient"] * 15
        assert get_balances(engine, "acme") == TenantBalances(
            available_micros=0, held_micros=50, spent_micros=0
        )
        assert ledger_inconsistencies(engine) == []
    finally:
        engine.dispose()


def test_sqlite_connection_pragmas(sqlite_url):
    engine = create_ledger_engine(sqlite_url)
    try:
        with engine.connect() as connection:
            foreign_keys = connection.exec_driver_sql("PRAGMA foreign_keys").scalar_one()
            journal_mode = connection.exec_driver_sql("PRAGMA journal_mode").scalar_one()
    finally:
        engine.dispose()

    assert foreign_keys == 1
    assert journal_mode == "wal"


def upgrade_to(database_url, revision):
    engine = create_ledger_engine(database_url, pool_size=1, max_overflow=0)
    try:
        with engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                disable_sqlite_foreign_keys(connection)
            with connection.begin():
                config = Config()
                config.set_main_option("script_location", str(MIGRATIONS_DIR))
                config.attributes["connection"] = connection
                command.upgrade(config, revision)
    finally:
        engine.dispose()


def post_in_0001_schema(connection, transaction_id, kind, job_id, amount, source, destination):
    """Write a transaction and its postings as the 0001 code did."""
    connection.execute(
        sa.text(
            "INSERT INTO transactions (id, tenant_id, key, kind, job_id, amount, reason)"
            " VALUES (:id, 'acme', :key, :kind, :job_id, :amount, '')"
        ),
        {
            "id": transaction_id,
            "key": f"k{transaction_id}",
            "kind": kind,
            "job_id": job_id,
            "amount": amount,
        },
    )
    for account_id, delta in ((source, -amount), (destination, amount)):
        balance = connection.execute(
            sa.text(
                "UPDATE accounts SET balance = balance + :delta WHERE id = :id RETURNING balance"
            ),
            {"delta": delta, "id": account_id},
        ).scalar_one()
        connection.execute(
            sa.text(
                "INSERT INTO postings (transaction_id, account_id, amount, balance_after)"
                " VALUES (:transaction_id, :account_id, :amount, :balance)"
            ),
            {
                "transaction_id": transaction_id,
                "account_id": account_id,
                "amount": delta,
                "balance": balance,
            },
        )


def fill_0001_ledger(database_url):
    """Grant acme 100; hold 60 for job j, capture 20, release 10; hold 5 for job k, release 5."""
    engine = create_ledger_engine(database_url)
    try:
        with engine.begin() as connection:
            connection.execute(
                sa.text(
                    "INSERT INTO accounts (id, tenant_id, name, balance, allow_negative) VALUES"
                    " (1, 'platform', 'funding', 0, true), (2, 'acme', 'available', 0, false),"
                    " (3, 'acme', 'held', 0, false), (4, 'platform', 'revenue', 0, false)"
                )
            )
            connection.execute(
                sa.text(
                    "INSERT INTO holds (job_id, tenant_id, amount, captured, released) VALUES"
                    " ('j', 'acme', 60, 20, 10), ('k', 'acme', 5, 0, 5)"
                )
            )
            post_in_0001_schema(connection, 1, "grant", None, 100, 1, 2)
            post_in_0001_schema(connection, 2, "hold", "j", 60, 2, 3)
            post_in_0001_schema(connection, 3, "capture", "j", 20, 3, 4)
            post_in_0001_schema(connection, 4, "release", "j", 10, 3, 2)
            post_in_0001_schema(connection, 5, "hold", "k", 5, 2, 3)
            post_in_0001_schema(connection, 6, "release", "k", 5, 3, 2)
            if connection.dialect.name == "postgresql":
                connection.exec_driver_sql(
                    "SELECT setval('transactions_id_seq', 6), setval('accounts_id_seq', 4),"
                    " setval('postings_id_seq', 12)"
                )
    finally:
        engine.dispose()


@pytest.fixture(params=["postgresql", "sqlite"])
def ledger_at_0001_with_data(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'ledger.db'}"
        upgrade_to(url, "0001")
        fill_0001_ledger(url)
        yield url
        return
    with fresh_pg_database() as url:
        upgrade_to(url, "0001")
        fill_0001_ledger(url)
        yield url


def test_upgrade_keeps_existing_balances_and_holds(ledger_at_0001_with_data):
    url = ledger_at_0001_with_data

    upgrade(url)

    engine = create_ledger_engine(url)
    try:
        assert verify_ledger(engine).ok, str(verify_ledger(engine))
        assert get_balances(engine, "acme") == TenantBalances(
            available_micros=50, held_micros=30, spent_micros=20
        )
        capture(engine, tenant_id="acme", job_id="j", amount_micros=25, key="c2")
        release(engine, tenant_id="acme", job_id="j", amount_micros=5, key="r2")
        refund(engine, tenant_id="acme", job_id="j", amount_micros=45, key="rf", reason="outage")
        hold(engine, tenant_id="acme", job_id="m", amount_micros=100, key="h3")
        assert get_balances(engine, "acme") == TenantBalances(
            available_micros=0, held_micros=100, spent_micros=0
        )
        assert verify_ledger(engine).ok, str(verify_ledger(engine))
    finally:
        engine.dispose()

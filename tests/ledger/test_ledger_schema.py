import threading

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
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
    release,
    upgrade,
)
from ledger.models import metadata

HEAD_REVISION = "0002"


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

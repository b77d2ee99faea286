import time

import sqlalchemy as sa

from ledger import (
    TenantBalances,
    create_ledger_engine,
    get_balances,
    get_statement,
    grant,
    hold,
    post_batch,
    upgrade,
    verify_ledger,
)
from ledger.operations import Operation


def drop_other_connections(database_url: str) -> None:
    """Terminate every other session on the database and wait until they are gone."""
    # Autocommit, because a transaction would keep reading one snapshot of pg_stat_activity.
    admin = sa.create_engine(database_url, poolclass=sa.NullPool, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            others = (
                "FROM pg_stat_activity WHERE datname = current_database()"
                " AND pid <> pg_backend_pid()"
            )
            connection.exec_driver_sql(f"SELECT pg_terminate_backend(pid) {others}")
            deadline = time.monotonic() + 10
            while connection.exec_driver_sql(f"SELECT count(*) {others}").scalar_one():
                assert time.monotonic() < deadline, "sessions still open after 10 s"
                time.sleep(0.05)
    finally:
        admin.dispose()


def fill_pool(engine, size: int) -> None:
    connections = [engine.connect() for _ in range(size)]
    for connection in connections:
        connection.exec_driver_sql("SELECT 1")
    for connection in connections:
        connection.close()


def test_operations_reconnect_after_connections_dropped(empty_pg_url):
    upgrade(empty_pg_url)
    engine = create_ledger_engine(empty_pg_url, pool_size=3, max_overflow=0)
    try:
        grant(engine, tenant_id="acme", amount_micros=100, key="g")
        fill_pool(engine, 3)
        drop_other_connections(empty_pg_url)

        posted = hold(engine, tenant_id="acme", job_id="j", amount_micros=10, key="h")

        assert posted.replayed is False
        drop_other_connections(empty_pg_url)
        assert get_balances(engine, "acme") == TenantBalances(
            available_micros=90, held_micros=10, spent_micros=0
        )
        drop_other_connections(empty_pg_url)
        (batch_result,) = post_batch(
            engine, [Operation(kind="grant", tenant_id="acme", amount_micros=1, key="g2")]
        )
        assert batch_result.replayed is False
        drop_other_connections(empty_pg_url)
        assert len(get_statement(engine, "acme").entries) == 3
        drop_other_connections(empty_pg_url)
        assert verify_ledger(engine).ok is True
    finally:
        engine.dispose()

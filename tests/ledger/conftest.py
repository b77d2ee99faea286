"""Fixtures for the ledger tests: a fresh PostgreSQL database per session, emptied per test."""

from collections.abc import Callable, Iterator

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from ledger.db import create_ledger_engine
from ledger.models import HELD, accounts, holds, postings, transactions
from tests.conftest import fresh_pg_database


@pytest.fixture
def empty_pg_url() -> Iterator[str]:
    """URL of a new, empty PostgreSQL database, dropped after the test."""
    with fresh_pg_database() as url:
        yield url


@pytest.fixture(scope="session")
def pg_engine(pg_url: str) -> Iterator[Engine]:
    """Engine on the session database, with enough connections for the concurrency tests."""
    engine = create_ledger_engine(pg_url, pool_size=50, max_overflow=0)
    yield engine
    engine.dispose()


@pytest.fixture
def engine(pg_engine: Engine) -> Engine:
    """The session engine, on a ledger emptied before the test."""
    with pg_engine.begin() as connection:
        connection.exec_driver_sql(
            "TRUNCATE postings, holds, transactions, accounts RESTART IDENTITY"
        )
    return pg_engine


def find_ledger_inconsistencies(engine: Engine) -> list[str]:
    """List every broken bookkeeping invariant in the ledger, as readable lines."""
    problems = []
    with engine.connect() as connection:
        transaction_rows = connection.execute(sa.select(transactions)).all()
        posting_rows = connection.execute(sa.select(postings).order_by(postings.c.id)).all()
        account_rows = connection.execute(sa.select(accounts)).all()
        hold_rows = connection.execute(sa.select(holds)).all()

    for transaction in transaction_rows:
        amounts = sorted(p.amount for p in posting_rows if p.transaction_id == transaction.id)
        if amounts != [-transaction.amount, transaction.amount]:
            problems.append(f"transaction {transaction.id} has postings {amounts}")

    for account in account_rows:
        running_balance = 0
        for posting in (p for p in posting_rows if p.account_id == account.id):
            running_balance += posting.amount
            if posting.balance_after != running_balance:
                problems.append(
                    f"posting {posting.id} has balance_after {posting.balance_after},"
                    f" the running sum is {running_balance}"
                )
        if account.balance != running_balance:
            problems.append(
                f"account {account.tenant_id}/{account.name} has balance {account.balance},"
                f" its postings sum to {running_balance}"
            )

    held_by_tenant: dict[str, int] = {}
    for hold_row in hold_rows:
        remaining = hold_row.amount - hold_row.captured - hold_row.released
        held_by_tenant[hold_row.tenant_id] = held_by_tenant.get(hold_row.tenant_id, 0) + remaining
    for account in account_rows:
        if account.name == HELD and account.balance != held_by_tenant.get(account.tenant_id, 0):
            problems.append(
                f"held balance of {account.tenant_id} is {account.balance}, its holds have"
                f" {held_by_tenant.get(account.tenant_id, 0)} left"
            )

    return problems


@pytest.fixture
def ledger_inconsistencies() -> Callable[[Engine], list[str]]:
    """`find_ledger_inconsistencies`, for tests: an empty list means the ledger is consistent."""
    return find_ledger_inconsistencies

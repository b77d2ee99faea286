"""Fixtures of the adversarial tests: the session's PostgreSQL ledger and a fresh tenant."""

import uuid

import pytest

import ledger


@pytest.fixture(scope="session")
def ledger_engine(pg_url):
    engine = ledger.create_ledger_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:12]}"

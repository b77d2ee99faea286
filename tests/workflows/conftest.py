import os
import sysconfig
import uuid

import pytest
from temporalio.testing import WorkflowEnvironment

import ledger

TEST_SERVER = os.path.join(sysconfig.get_path("scripts"), "temporal-test-server")


@pytest.fixture(scope="session")
async def time_env():
    """One time-skipping test server for the whole session."""
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=TEST_SERVER)
    yield env
    await env.shutdown()


@pytest.fixture(scope="session")
def ledger_engine(pg_url):
    engine = ledger.create_ledger_engine(pg_url)
    yield engine
    engine.dispose()


@pytest.fixture
def tenant() -> str:
    return f"tenant-{uuid.uuid4().hex[:12]}"

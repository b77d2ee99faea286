"""`QuotesWorkflow`: the offers a job would choose from, for `GET /v1/quotes`.

A short workflow rather than a direct call from the API, so the API needs no provider
credentials: quotes come from the workers' providers, with the job's fan-out and timeouts.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.jobs import JobActivities
    from activities.types import JobConfigInput
    from providers.base import Offer, QuoteRequest
    from workflows.quoting import collect_offers

CONFIG_TIMEOUT = timedelta(seconds=10)


@dataclass
class QuotesResult:
    """Offers from every provider that responded, cheapest first."""

    offers: list[Offer] = field(default_factory=list)
    failed_providers: list[str] = field(default_factory=list)
    """Providers that failed or did not respond in time, left out of `offers`."""


@workflow.defn
class QuotesWorkflow:
    """Collects quotes from every enabled provider once."""

    @workflow.run
    async def run(self, request: QuoteRequest) -> QuotesResult:
        """Return the offers for `request`, cheapest first."""
        config = await workflow.execute_activity_method(
            JobActivities.load_job_config,
            JobConfigInput(),
            start_to_close_timeout=CONFIG_TIMEOUT,
        )
        offers, failed = await collect_offers(
            config.providers, request, timedelta(seconds=config.quote_timeout_seconds)
        )
        offers.sort(
            key=lambda o: (o.price_per_hour_micros, o.start_seconds, o.provider, o.region, o.instance_type)
        )
        return QuotesResult(offers=offers, failed_providers=failed)

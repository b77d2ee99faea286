"""`/v1/quotes`: the offers a job with these resources would choose from."""

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import Field

from api.auth import JOBS_READ
from api.credits import format_credits
from api.deps import SettingsDep, TemporalClientDep, require_scope
from api.models import MAX_GPU_COUNT, MAX_GPU_TYPE_LENGTH, CamelModel
from providers.base import QuoteRequest
from workflows.quotes import QuotesResult, QuotesWorkflow

router = APIRouter(prefix="/v1/quotes", tags=["quotes"])

QUOTES_TIMEOUT = timedelta(seconds=60)
"""Maximum time a quote request may take. Each provider has its own, shorter timeout."""


class OfferView(CamelModel):
    """One provider's offer."""

    provider: str
    region: str
    instance_type: str
    gpu_type: str | None
    gpu_count: int
    spot: bool
    price_per_hour: str = Field(description="Credits per hour, as a decimal string.")
    start_seconds: int = Field(description="Expected seconds from launch until the job runs.")


class QuotesView(CamelModel):
    """Body of `GET /v1/quotes`."""

    offers: list[OfferView] = Field(description="Offers, cheapest first.")
    failed_providers: list[str] = Field(
        description="Providers that failed or did not respond in time."
    )


@router.get("", dependencies=[Depends(require_scope(JOBS_READ))])
async def get_quotes(
    client: TemporalClientDep,
    settings: SettingsDep,
    gpu_type: Annotated[
        str | None, Query(alias="gpuType", min_length=1, max_length=MAX_GPU_TYPE_LENGTH)
    ] = None,
    gpu_count: Annotated[int | None, Query(alias="gpuCount", ge=0, le=MAX_GPU_COUNT)] = None,
    spot_ok: Annotated[bool, Query(alias="spotOk")] = False,
) -> QuotesView:
    """Ask every enabled provider for offers and return them cheapest first."""
    count = gpu_count
    if count is None:
        count = 1 if gpu_type else 0
    if gpu_type and count == 0:
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, "gpuCount must be at least 1 when gpuType is set"
        )

    result: QuotesResult = await client.execute_workflow(
        QuotesWorkflow.run,
        QuoteRequest(gpu_type=gpu_type, gpu_count=count, spot_ok=spot_ok),
        id=f"quotes-{uuid.uuid4().hex}",
        task_queue=settings.task_queue,
        execution_timeout=QUOTES_TIMEOUT,
    )
    return QuotesView(
        offers=[
            OfferView(
                provider=offer.provider,
                region=offer.region,
                instance_type=offer.instance_type,
                gpu_type=offer.gpu_type,
                gpu_count=offer.gpu_count,
                spot=offer.spot,
                price_per_hour=format_credits(offer.price_per_hour_micros),
                start_seconds=offer.start_seconds,
            )
            for offer in result.offers
        ],
        failed_providers=result.failed_providers,
    )

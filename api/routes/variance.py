"""`/v1/admin/variance`: jobs whose providers charged more than they quoted."""

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query
from pydantic import Field

from api.auth import BILLING_ADMIN
from api.credits import format_credits
from api.deps import LedgerEngineDep, require_scope
from api.models import CamelModel
from api.query_times import MAX_LENGTH as MAX_TIME_LENGTH
from api.query_times import parse_query_time
from ledger.provider_costs import JobVariance, variance_report

router = APIRouter(
    prefix="/v1/admin/variance",
    tags=["admin"],
    dependencies=[Depends(require_scope(BILLING_ADMIN))],
)

MAX_VARIANCE_LIMIT = 1000


class JobVarianceView(CamelModel):
    """One job's quoted and charged provider cost, and the platform's margin, in credits."""

    job_id: str
    tenant_id: str
    providers: list[str] = Field(description="Providers of the job's segments, sorted.")
    segments: int = Field(description="Number of instances the job ran on.")
    quoted_cost: str = Field(description="Provider cost at the quoted prices.")
    charged_cost: str = Field(description="What the providers charged.")
    billed: str = Field(description="What the tenant paid: captured minus refunded.")
    variance: str = Field(description="Charged minus quoted; positive is an overcharge.")
    margin: str = Field(description="Billed minus charged; negative is a loss.")
    last_charged_at: datetime

    @classmethod
    def from_variance(cls, job: JobVariance) -> "JobVarianceView":
        return cls(
            job_id=job.job_id,
            tenant_id=job.tenant_id,
            providers=job.providers,
            segments=job.segments,
            quoted_cost=format_credits(job.quoted_cost_micros),
            charged_cost=format_credits(job.charged_cost_micros),
            billed=format_credits(job.billed_micros),
            variance=format_credits(job.variance_micros),
            margin=format_credits(job.margin_micros),
            last_charged_at=job.last_charged_at,
        )


class VarianceReportView(CamelModel):
    """The variance report, largest variance first, with the totals of the listed jobs."""

    jobs: list[JobVarianceView]
    total_quoted_cost: str
    total_charged_cost: str
    total_variance: str
    total_margin: str


@router.get("")
def get_variance(
    engine: LedgerEngineDep,
    since: Annotated[
        str | None,
        Query(
            max_length=MAX_TIME_LENGTH,
            description="Only jobs charged at or after this ISO 8601 time with a timezone.",
        ),
    ] = None,
    provider: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=255,
            pattern=r"^[^\x00-\x1f\x7f]+$",
            description="Only jobs on this provider.",
        ),
    ] = None,
    include_all: Annotated[
        bool,
        Query(
            alias="all",
            description="Also list jobs charged at or below their quotes, to see every margin.",
        ),
    ] = False,
    limit: Annotated[
        int, Query(ge=1, le=MAX_VARIANCE_LIMIT, description="Maximum number of jobs listed.")
    ] = 100,
) -> VarianceReportView:
    """List the jobs whose providers charged more than their quotes, largest variance first."""
    # A plain def, so that FastAPI runs the blocking ledger query in its thread pool.
    jobs = variance_report(
        engine,
        since=None if since is None else parse_query_time(since, "since"),
        provider=provider,
        include_all=include_all,
        limit=limit,
    )
    return VarianceReportView(
        jobs=[JobVarianceView.from_variance(job) for job in jobs],
        total_quoted_cost=format_credits(sum(job.quoted_cost_micros for job in jobs)),
        total_charged_cost=format_credits(sum(job.charged_cost_micros for job in jobs)),
        total_variance=format_credits(sum(job.variance_micros for job in jobs)),
        total_margin=format_credits(sum(job.margin_micros for job in jobs)),
    )


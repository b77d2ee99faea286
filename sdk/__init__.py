"""Python client of the compute-as-credit API, for people and agents.

`Client` is synchronous and `AsyncClient` is its asyncio twin with the same methods. Both
return the frozen dataclasses of `sdk.models`, with amounts as `Decimal` credits.
"""

from sdk.async_client import AsyncClient
from sdk.client import Client
from sdk.errors import ApiError, WaitTimeout
from sdk.models import (
    FINAL_STATUSES,
    JOB_STATUSES,
    Balance,
    IoUrls,
    Job,
    JobEvent,
    JobPage,
    JobSummary,
    Quote,
    QuoteList,
    Segment,
    SubmittedJob,
)

__all__ = [
    "FINAL_STATUSES",
    "JOB_STATUSES",
    "ApiError",
    "AsyncClient",
    "Balance",
    "Client",
    "IoUrls",
    "Job",
    "JobEvent",
    "JobPage",
    "JobSummary",
    "Quote",
    "QuoteList",
    "Segment",
    "SubmittedJob",
    "WaitTimeout",
]

"""`GET /v1/jobs`: the caller's jobs, from Temporal's visibility store.

The list reads each job's search attributes, not its workflow state, so it needs no worker.
Visibility is eventually consistent: a job shows up, and its status changes, a moment after
its workflow records them.

Order: Temporal's SQL visibility (the dev server's SQLite, PostgreSQL, MySQL) cannot sort by a
chosen field. It returns running jobs first, newest submitted first, then ended jobs, most
recently ended first, and this route keeps that order.

NOTE: a job that `temporal workflow reset` restarted has two runs with the same job id, and
both are listed: the new run, and the old one as FAILED, because the reset terminated it.
"""

import logging
import unicodedata
from datetime import UTC, timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status
from temporalio.api.workflow.v1 import WorkflowExecutionInfo
from temporalio.api.workflowservice.v1 import ListWorkflowExecutionsRequest
from temporalio.client import Client, WorkflowExecutionStatus
from temporalio.converter import decode_typed_search_attributes
from temporalio.service import RPCError, RPCStatusCode

from api.auth import JOBS_READ
from api.credits import format_credits
from api.deps import CurrentTenant, TemporalClientDep, require_scope
from api.errors import TEMPORAL_UNAVAILABLE, ApiProblem, field_error
from api.job_search import JobFilter, build_job_query, decode_cursor, encode_cursor, job_status
from api.models import JobList, JobSummary
from api.query_times import MAX_LENGTH as MAX_TIME_LENGTH
from api.query_times import parse_query_time
from workflows.search_attributes import COST_MICROS, GPU_TYPE, JOB_STATUS, PROVIDER
from workflows.types import JobStatus

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100

MAX_GPU_TYPE_LENGTH = 255
MAX_CURSOR_LENGTH = 4096
"""Longest accepted cursor. Page tokens of Temporal 1.32's SQLite store encode to about 170."""

LIST_TIMEOUT = timedelta(seconds=10)
"""How long one visibility request may take before the API returns 503."""

_STATUS_NAMES = ", ".join(job.value for job in JobStatus)


@router.get(
    "",
    dependencies=[Depends(require_scope(JOBS_READ))],
    responses={
        status.HTTP_422_UNPROCESSABLE_CONTENT: {
            "description": "An invalid filter, limit or cursor; `errors` names it."
        },
        status.HTTP_503_SERVICE_UNAVAILABLE: {
            "description": "Temporal failed, or its namespace lacks the job search attributes."
        },
    },
)
async def list_jobs(
    tenant: CurrentTenant,
    client: TemporalClientDep,
    statuses: Annotated[
        list[str] | None,
        Query(
            alias="status",
            description=f"Only jobs in these statuses: {_STATUS_NAMES}. Repeat the parameter"
            " or separate statuses with commas.",
        ),
    ] = None,
    gpu_type: Annotated[
        str | None,
        Query(
            alias="gpuType",
            min_length=1,
            max_length=MAX_GPU_TYPE_LENGTH,
            description="Only jobs that requested this GPU model, matched exactly.",
        ),
    ] = None,
    submitted_after: Annotated[
        str | None,
        Query(
            alias="submittedAfter",
            max_length=MAX_TIME_LENGTH,
            description="Only jobs submitted at or after this ISO 8601 time with a timezone.",
        ),
    ] = None,
    submitted_before: Annotated[
        str | None,
        Query(
            alias="submittedBefore",
            max_length=MAX_TIME_LENGTH,
            description="Only jobs submitted before this ISO 8601 time with a timezone.",
        ),
    ] = None,
    limit: Annotated[
        int,
        Query(ge=1, le=MAX_PAGE_SIZE, description="Maximum number of jobs on the page."),
    ] = DEFAULT_PAGE_SIZE,
    cursor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=MAX_CURSOR_LENGTH,
            pattern=r"^[A-Za-z0-9_-]+$",
            description="`nextCursor` of the previous page; omit it for the first page.",
        ),
    ] = None,
) -> JobList:
    """List the caller's jobs, running jobs first, newest first, one page at a time."""
    job_filter = JobFilter(
        tenant_id=tenant,
        statuses=_parse_statuses(statuses or []),
        gpu_type=_check_gpu_type(gpu_type),
        submitted_after=(
            None if submitted_after is None else parse_query_time(submitted_after, "submittedAfter")
        ),
        submitted_before=(
            None
            if submitted_before is None
            else parse_query_time(submitted_before, "submittedBefore")
        ),
    )
    query = _build_query(job_filter)
    page_token = _decode_cursor(cursor)

    executions, next_page_token = await _list_page(
        client, query, page_size=limit, page_token=page_token
    )
    return JobList(
        jobs=[_summarize(execution) for execution in executions],
        next_cursor=encode_cursor(next_page_token) if next_page_token else None,
    )


def _parse_statuses(values: list[str]) -> list[JobStatus]:
    statuses = []
    for value in values:
        for name in value.split(","):
            try:
                statuses.append(JobStatus(name.strip()))
            except ValueError:
                raise field_error(
                    ("query", "status"), f"{name!r} is not a job status; use {_STATUS_NAMES}"
                ) from None
    return statuses


def _check_gpu_type(gpu_type: str | None) -> str | None:
    if gpu_type is not None and any(unicodedata.category(char) == "Cc" for char in gpu_type):
        raise field_error(("query", "gpuType"), "must not contain control characters")
    return gpu_type


def _build_query(job_filter: JobFilter) -> str:
    after, before = job_filter.submitted_after, job_filter.submitted_before
    if after is not None and before is not None and after >= before:
        raise field_error(("query", "submittedBefore"), "must be later than submittedAfter")
    return build_job_query(job_filter)


def _decode_cursor(cursor: str | None) -> bytes | None:
    if cursor is None:
        return None
    try:
        return decode_cursor(cursor)
    except ValueError:
        raise field_error(
            ("query", "cursor"), "is not a nextCursor that this API returned"
        ) from None


async def _list_page(
    client: Client,
    query: str,
    *,
    page_size: int,
    page_token: bytes | None,
) -> tuple[list[WorkflowExecutionInfo], bytes]:
    request = ListWorkflowExecutionsRequest(
        namespace=client.namespace,
        page_size=page_size,
        next_page_token=page_token or b"",
        query=query,
    )
    try:
        # No retries for a cursor's page, because Temporal returns UNKNOWN for a page token it
        # cannot read, and the client would retry that for about ten seconds.
        response = await client.workflow_service.list_workflow_executions(
            request, retry=page_token is None, timeout=LIST_TIMEOUT
        )
    except RPCError as error:
        if error.status == RPCStatusCode.INVALID_ARGUMENT and (
            "invalid search attribute" in error.message
        ):
            logger.warning(
                "listing jobs failed in namespace %s: %s", client.namespace, error.message
            )
            raise ApiProblem(
                status.HTTP_503_SERVICE_UNAVAILABLE,
                f"the job search attributes are not registered in the Temporal namespace"
                f" {client.namespace}; an operator must run `cac ops init`",
                problem_type=TEMPORAL_UNAVAILABLE,
            ) from None
        if page_token is not None and error.status in (
            RPCStatusCode.INVALID_ARGUMENT,
            RPCStatusCode.UNKNOWN,
        ):
            # NOTE: Temporal also returns UNKNOWN for an internal failure, so such a failure
            # is reported as an invalid cursor. The first page, without a cursor, gets a 503.
            logger.info(
                "listing jobs with a cursor failed: %s: %s", error.status.name, error.message
            )
            raise field_error(
                ("query", "cursor"),
                "is invalid or expired; list again without a cursor, with the same filters",
            ) from None
        raise
    return list(response.executions), response.next_page_token


def _summarize(execution: WorkflowExecutionInfo) -> JobSummary:
    attributes = decode_typed_search_attributes(execution.search_attributes)
    execution_status = WorkflowExecutionStatus(execution.status) if execution.status else None
    closed_at = None
    if execution.HasField("close_time"):
        closed_at = execution.close_time.ToDatetime(tzinfo=UTC).isoformat()

    return JobSummary(
        job_id=execution.execution.workflow_id,
        status=job_status(execution_status, attributes.get(JOB_STATUS)),
        provider=attributes.get(PROVIDER),
        gpu_type=attributes.get(GPU_TYPE),
        cost=format_credits(attributes.get(COST_MICROS, 0)),
        submitted_at=execution.start_time.ToDatetime(tzinfo=UTC).isoformat(),
        closed_at=closed_at,
    )

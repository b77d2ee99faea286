"""Visibility queries that find a tenant's jobs by their search attributes.

Every query is built here from validated values: each string goes into the query as a quoted
literal, so that no filter value can add query syntax.

A job's status is its `JobStatus` search attribute while its workflow runs or after it
completed. A workflow that closed otherwise (terminated by an operator, timed out, failed,
or cancelled through Temporal) never recorded a final status, so it counts as FAILED, or
CANCELLED when it was cancelled, as in `GET /v1/jobs/{jobId}`. The status filter matches
the same status that the list shows.
"""

import base64
import binascii
import re
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from temporalio.client import WorkflowExecutionStatus

from workflows.job import JobWorkflow
from workflows.search_attributes import GPU_TYPE, JOB_STATUS, TENANT_ID
from workflows.types import JobStatus

_CURSOR = re.compile(r"[A-Za-z0-9_-]+")

_RUNNING_OR_COMPLETED = "ExecutionStatus IN ('Running', 'Completed')"

# Close statuses of a workflow that ended without recording a final JobStatus, in
# Temporal's visibility spelling, by the job status they count as.
_CLOSED_WITHOUT_STATUS = {
    JobStatus.FAILED: "ExecutionStatus IN ('Failed', 'Terminated', 'TimedOut')",
    JobStatus.CANCELLED: "ExecutionStatus = 'Canceled'",
}
_FAILED_CLOSE_STATUSES = frozenset(
    {
        WorkflowExecutionStatus.FAILED,
        WorkflowExecutionStatus.TERMINATED,
        WorkflowExecutionStatus.TIMED_OUT,
    }
)


@dataclass(frozen=True)
class JobFilter:
    """Selection of a tenant's jobs to list."""

    tenant_id: str
    """Tenant whose jobs are listed."""

    statuses: Collection[JobStatus] = ()
    """Job statuses to include; empty for every status."""

    gpu_type: str | None = None
    """Requested GPU model to match exactly; None for any, CPU-only jobs included."""

    submitted_after: datetime | None = None
    """Only jobs submitted at or after this time, which must have a timezone; None for no bound."""

    submitted_before: datetime | None = None
    """Only jobs submitted before this time, which must have a timezone; None for no bound."""


def quote_literal(value: str) -> str:
    """Quote `value` as a string literal of Temporal's visibility query language.

    The parser reads a backslash as the start of an escape sequence, so a backslash is
    doubled before each single quote is escaped.
    """
    escaped = value.replace("\\", "\\\\").replace("'", "\\'")
    return f"'{escaped}'"


def build_job_query(job_filter: JobFilter) -> str:
    """Build the visibility query of the jobs that `job_filter` selects.

    Runs that continued as new are left out, so that each job is listed once, by its
    latest run.

    Raises:
        ValueError: a time bound has no timezone, or is out of range once converted to UTC.
    """
    clauses = [
        f"WorkflowType = {quote_literal(JobWorkflow.__name__)}",
        f"{TENANT_ID.name} = {quote_literal(job_filter.tenant_id)}",
        "ExecutionStatus != 'ContinuedAsNew'",
    ]
    if job_filter.statuses:
        alternatives = [_status_clause(status) for status in sorted(set(job_filter.statuses))]
        clauses.append(f"({' OR '.join(alternatives)})")
    if job_filter.gpu_type is not None:
        clauses.append(f"{GPU_TYPE.name} = {quote_literal(job_filter.gpu_type)}")
    if job_filter.submitted_after is not None:
        clauses.append(f"StartTime >= {quote_literal(_utc_time(job_filter.submitted_after))}")
    if job_filter.submitted_before is not None:
        clauses.append(f"StartTime < {quote_literal(_utc_time(job_filter.submitted_before))}")
    return " AND ".join(clauses)


def job_status(
    execution_status: WorkflowExecutionStatus | None, recorded: str | None
) -> JobStatus:
    """Return a listed job's status from its workflow's status and its `JobStatus` attribute.

    Args:
        execution_status: Temporal's status of the job's workflow run.
        recorded: The run's `JobStatus` search attribute; None if it has none.
    """
    if execution_status in _FAILED_CLOSE_STATUSES:
        return JobStatus.FAILED
    if execution_status == WorkflowExecutionStatus.CANCELED:
        return JobStatus.CANCELLED
    # NOTE: the API sets JobStatus when it starts the workflow, so a listed job always has
    # one. A value that this version does not know is reported as SUBMITTED.
    try:
        return JobStatus(recorded)
    except ValueError:
        return JobStatus.SUBMITTED


def encode_cursor(page_token: bytes) -> str:
    """Encode Temporal's next-page token as an opaque, URL-safe cursor."""
    return base64.urlsafe_b64encode(page_token).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str) -> bytes:
    """Decode a cursor from `encode_cursor` back into Temporal's page token.

    Raises:
        ValueError: `cursor` is empty or not unpadded base64url.
    """
    invalid = ValueError("not a cursor that this API returned")
    if not _CURSOR.fullmatch(cursor):
        raise invalid
    padded = cursor + "=" * (-len(cursor) % 4)
    try:
        return base64.b64decode(padded, altchars=b"-_", validate=True)
    except binascii.Error:
        raise invalid from None


def _status_clause(status: JobStatus) -> str:
    clause = f"({JOB_STATUS.name} = {quote_literal(status.value)} AND {_RUNNING_OR_COMPLETED})"
    closed_without_status = _CLOSED_WITHOUT_STATUS.get(status)
    if closed_without_status is not None:
        clause = f"{clause} OR {closed_without_status}"
    return clause


def _utc_time(value: datetime) -> str:
    if value.utcoffset() is None:
        raise ValueError(f"{value.isoformat()} has no timezone")
    try:
        return value.astimezone(UTC).isoformat()
    except OverflowError:
        raise ValueError(f"{value.isoformat()} is out of range in UTC") from None

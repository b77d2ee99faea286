"""Conversion of a job's workflow state into the `GET /v1/jobs/{jobId}` response body."""

from temporalio.client import WorkflowExecutionStatus

from api.credits import format_credits
from api.models import JobView, Quote, SegmentView
from workflows.types import JobState, JobStatus

_CLOSE_REASONS = {
    WorkflowExecutionStatus.FAILED: "the job's workflow failed",
    WorkflowExecutionStatus.TERMINATED: "the job's workflow was terminated",
    WorkflowExecutionStatus.TIMED_OUT: "the job's workflow timed out",
    WorkflowExecutionStatus.CANCELED: "the job's workflow was cancelled",
}


def view_from_state(state: JobState, max_budget_micros: int | None) -> JobView:
    """Build the response body from the workflow's `JobState`.

    Args:
        state: The live state from the `state` query, or the workflow's result.
        max_budget_micros: The job's maximum budget from the workflow memo; None if the memo
            lacks it.
    """
    offer = state.chosen_offer
    quote = None
    if offer is not None:
        quote = Quote(
            provider=offer.provider,
            instance_type=offer.instance_type,
            region=offer.region,
            gpu_type=offer.gpu_type,
            gpu_count=offer.gpu_count,
            spot=offer.spot,
            price_per_hour=format_credits(offer.price_per_hour_micros),
        )

    return JobView(
        job_id=state.job_id,
        status=state.status,
        failure_reason=state.failure_reason,
        provider=offer.provider if offer is not None else None,
        quote=quote,
        attempts=len(state.attempts),
        selection_reason=state.selection_reason,
        segments=[
            SegmentView(
                provider=segment.provider,
                instance_id=segment.instance_id,
                price_per_hour=format_credits(segment.price_per_hour_micros),
                billable_seconds=segment.billable_seconds,
                cost=format_credits(segment.cost_micros),
                end_state=segment.end_state,
            )
            for segment in state.segments
        ],
        exit_code=state.exit_code,
        max_budget=_format_optional(max_budget_micros),
        held=format_credits(state.held_micros),
        cost=format_credits(state.cost_micros),
        captured=format_credits(state.captured_micros),
        released=format_credits(state.released_micros),
        submitted_at=state.submitted_at or None,
        started_at=state.started_at or None,
        finished_at=state.finished_at or None,
    )


def view_from_close(
    job_id: str,
    close_status: WorkflowExecutionStatus,
    *,
    max_budget_micros: int | None,
    detail: str = "",
    submitted_at: str | None = None,
    finished_at: str | None = None,
) -> JobView:
    """Build the response body for a workflow that closed without returning a `JobState`.

    A workflow cancelled through Temporal maps to CANCELLED; failed, terminated and timed-out
    ones map to FAILED. Amounts other than the maximum budget are null, because the state
    they come from is lost with the workflow's result.

    Args:
        job_id: The job id.
        close_status: The workflow's close status; not RUNNING or COMPLETED.
        max_budget_micros: The job's maximum budget from the workflow memo, or None.
        detail: The failure's message, when the workflow failed with one.
        submitted_at: ISO 8601 start time of the workflow.
        finished_at: ISO 8601 close time of the workflow.
    """
    reason = _CLOSE_REASONS.get(close_status, f"the job's workflow closed as {close_status.name}")
    if detail:
        reason = f"{reason}: {detail}"
    if close_status == WorkflowExecutionStatus.CANCELED:
        status = JobStatus.CANCELLED
    else:
        status = JobStatus.FAILED

    return JobView(
        job_id=job_id,
        status=status,
        failure_reason=reason,
        max_budget=_format_optional(max_budget_micros),
        submitted_at=submitted_at,
        finished_at=finished_at,
    )


def _format_optional(micros: int | None) -> str | None:
    return format_credits(micros) if micros is not None else None

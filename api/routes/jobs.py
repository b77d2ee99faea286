"""`/v1/jobs`: submit a job as a `JobWorkflow` execution and read its state back."""

import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, HTTPException, Path, Response, status
from temporalio.client import (
    Client,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowFailureError,
    WorkflowHandle,
    WorkflowQueryFailedError,
    WorkflowQueryRejectedError,
)
from temporalio.common import (
    SearchAttributePair,
    TypedSearchAttributes,
    WorkflowIDConflictPolicy,
    WorkflowIDReusePolicy,
)
from temporalio.exceptions import WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from api.auth import JOBS_READ, JOBS_WRITE
from api.deps import CurrentTenant, SettingsDep, TemporalClientDep, require_scope
from api.errors import field_error
from api.idempotency import IDEMPOTENCY_KEY_PATTERN, derive_job_id, request_hash
from api.job_view import view_from_close, view_from_state
from api.json_route import DecimalJSONRoute
from api.models import (
    CancelJobRequest,
    JobEventsView,
    JobEventView,
    JobView,
    SubmitJobRequest,
    SubmitJobResponse,
)
from config import Settings
from ledger.money import credits_to_micros
from workflows.job import JobWorkflow
from workflows.search_attributes import GPU_TYPE, JOB_STATUS, TENANT_ID
from workflows.types import (
    FINAL_JOB_STATUSES,
    CancelRequest,
    InputReady,
    JobInput,
    JobState,
    JobStatus,
)

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"], route_class=DecimalJSONRoute)

TENANT_MEMO = "tenantId"
REQUEST_HASH_MEMO = "requestHash"
MAX_BUDGET_MEMO = "maxBudgetMicros"

QUERY_TIMEOUT = timedelta(seconds=10)
"""How long a `state` query waits for a worker's response before the API returns 503."""

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=IDEMPOTENCY_KEY_PATTERN,
        description="1 to 255 printable ASCII characters; a retry with the same key returns "
        "the same job instead of starting another.",
    ),
]

JobId = Annotated[str, Path(min_length=1, max_length=255)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    dependencies=[Depends(require_scope(JOBS_WRITE))],
    responses={
        status.HTTP_200_OK: {
            "model": SubmitJobResponse,
            "description": "A retry with a known Idempotency-Key: the job it started first.",
        },
        status.HTTP_403_FORBIDDEN: {"description": "userId does not match the token subject."},
        status.HTTP_422_UNPROCESSABLE_CONTENT: {
            "description": "Invalid body, or an Idempotency-Key reused with a different request."
        },
    },
)
async def submit_job(
    body: SubmitJobRequest,
    tenant: CurrentTenant,
    client: TemporalClientDep,
    settings: SettingsDep,
    response: Response,
    idempotency_key: IdempotencyKey = None,
) -> SubmitJobResponse:
    """Start a job; the tenant that pays is always the token's subject."""
    if body.user_id is not None and body.user_id != tenant:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "userId does not match the token subject")

    job_id = derive_job_id(tenant, idempotency_key)
    fingerprint = request_hash(body)
    max_budget_micros = credits_to_micros(body.max_budget)
    job_input = JobInput(
        job_id=job_id,
        tenant_id=tenant,
        image=body.agent_spec.image,
        command=body.agent_spec.cmd,
        max_budget_micros=max_budget_micros,
        env=body.agent_spec.env,
        gpu_type=body.resource_hint.gpu_type,
        gpu_count=body.resource_hint.gpu_count,
        spot_ok=body.resource_hint.spot_ok,
        submitted_at=datetime.now(UTC).isoformat(),
        policy=body.resource_hint.policy,
        providers=body.resource_hint.providers,
        max_price_per_hour_micros=(
            credits_to_micros(body.resource_hint.max_price_per_hour)
            if body.resource_hint.max_price_per_hour is not None
            else None
        ),
        callback_url=body.callback_url,
        wait_for_input=body.wait_for_input,
    )

    try:
        await _start_job(
            client, settings, job_input, fingerprint, WorkflowIDReusePolicy.REJECT_DUPLICATE
        )
    except WorkflowAlreadyStartedError:
        if idempotency_key is None:
            # A random id collided, which a 122-bit uuid4 makes practically impossible.
            raise
        job = await _replay(client, job_id, tenant=tenant, fingerprint=fingerprint)
        if not _failed_before_taking_effect(job):
            response.status_code = status.HTTP_200_OK
            logger.info("job %s: replayed submission for tenant %s", job_id, tenant)
            return SubmitJobResponse(job_id=job_id, status=job.status)

        # The first run failed before it held credits or launched anything, for example for
        # want of credits, so a retry with the key runs the job again as a new run.
        try:
            await _start_job(
                client, settings, job_input, fingerprint, WorkflowIDReusePolicy.ALLOW_DUPLICATE
            )
        except WorkflowAlreadyStartedError:
            # A concurrent retry started the new run first.
            job = await _replay(client, job_id, tenant=tenant, fingerprint=fingerprint)
            response.status_code = status.HTTP_200_OK
            return SubmitJobResponse(job_id=job_id, status=job.status)
        logger.info(
            "job %s: started again after its first run failed: %s", job_id, job.failure_reason
        )

    logger.info(
        "job %s: submitted for tenant %s with a maximum budget of %d micro-credits",
        job_id,
        tenant,
        max_budget_micros,
    )
    return SubmitJobResponse(job_id=job_id, status=JobStatus.SUBMITTED)


@router.get(
    "/{job_id}",
    dependencies=[Depends(require_scope(JOBS_READ))],
    responses={
        status.HTTP_404_NOT_FOUND: {"description": "No job with this id for this tenant."},
        status.HTTP_503_SERVICE_UNAVAILABLE: {
            "description": "No worker responded to the state query."
        },
    },
)
async def get_job(job_id: JobId, tenant: CurrentTenant, client: TemporalClientDep) -> JobView:
    """Return a job's status, chosen offer and money, live while it runs."""
    handle = client.get_workflow_handle_for(JobWorkflow.run, job_id)
    description = await describe_own_job(handle, tenant)
    return await _read_job(handle, description)


@router.post(
    "/{job_id}/cancel",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(require_scope(JOBS_WRITE))],
    responses={
        status.HTTP_404_NOT_FOUND: {"description": "No job with this id for this tenant."},
        status.HTTP_409_CONFLICT: {"description": "The job has already ended."},
    },
)
async def cancel_job(
    job_id: JobId,
    tenant: CurrentTenant,
    client: TemporalClientDep,
    body: CancelJobRequest | None = None,
) -> JobView:
    """Ask a job to stop: it tears its instance down, pays for the time used, ends CANCELLED.

    The cancellation is asynchronous, so the returned job is its state when the request was
    accepted. `GET /v1/jobs/{jobId}` shows CANCELLED once the teardown and settlement are done.
    A second cancel of a running job is accepted and changes nothing.
    """
    handle = client.get_workflow_handle_for(JobWorkflow.run, job_id)
    reason = body.reason if body is not None else CancelRequest().reason
    description = await _signal_running_job(
        handle, tenant, JobWorkflow.cancel, CancelRequest(reason=reason)
    )
    logger.info("job %s: cancel requested by tenant %s: %s", job_id, tenant, reason)
    return await _read_job(handle, description)


@router.post(
    "/{job_id}/input-ready",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=[Depends(require_scope(JOBS_WRITE))],
    responses={
        status.HTTP_404_NOT_FOUND: {"description": "No job with this id for this tenant."},
        status.HTTP_409_CONFLICT: {"description": "The job has already ended."},
    },
)
async def mark_input_ready(
    job_id: JobId, tenant: CurrentTenant, client: TemporalClientDep
) -> JobView:
    """Tell a job submitted with `waitForInput` that its input is uploaded, so it is placed.

    Sending it to a job that does not wait, or twice, changes nothing.
    """
    handle = client.get_workflow_handle_for(JobWorkflow.run, job_id)
    description = await _signal_running_job(handle, tenant, JobWorkflow.input_ready, InputReady())
    logger.info("job %s: input marked ready by tenant %s", job_id, tenant)
    return await _read_job(handle, description)


@router.get(
    "/{job_id}/events",
    dependencies=[Depends(require_scope(JOBS_READ))],
    responses={status.HTTP_404_NOT_FOUND: {"description": "No job with this id for this tenant."}},
)
async def get_job_events(
    job_id: JobId, tenant: CurrentTenant, client: TemporalClientDep
) -> JobEventsView:
    """Return the job's timeline: status changes, attempts, billed segments and settlement."""
    handle = client.get_workflow_handle_for(JobWorkflow.run, job_id)
    description = await describe_own_job(handle, tenant)
    state = await read_job_state(handle, description)
    events = [] if state is None else state.events
    return JobEventsView(
        job_id=job_id,
        events=[JobEventView.model_validate(event.to_json()) for event in events],
    )


async def _signal_running_job(
    handle: WorkflowHandle[Any, JobState], tenant: str, signal: Any, argument: Any
) -> WorkflowExecutionDescription:
    """Signal the tenant's running job and return its description.

    Raises:
        HTTPException: 404 for another tenant's job or none; 409 once the job has ended,
            also when it ends between the check and the signal.
    """
    description = await describe_own_job(handle, tenant)
    job = await _read_job(handle, description)
    # A job's workflow stays open after the job ended while its webhooks are still delivered.
    if (
        description.status == WorkflowExecutionStatus.RUNNING
        and job.status not in FINAL_JOB_STATUSES
    ):
        try:
            await handle.signal(signal, argument)
            return description
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            description = await describe_own_job(handle, tenant)
            job = await _read_job(handle, description)

    raise HTTPException(
        status.HTTP_409_CONFLICT, f"job {handle.id} has already ended {job.status.value}"
    )


async def read_job_state(
    handle: WorkflowHandle[Any, JobState], description: WorkflowExecutionDescription
) -> JobState | None:
    """Return the job's state: live while it runs, its result once completed, and None when
    its workflow ended without a result (terminated, timed out or failed)."""
    if description.status == WorkflowExecutionStatus.RUNNING:
        return await _query_state(handle)
    if description.status == WorkflowExecutionStatus.COMPLETED:
        return await handle.result()
    return None


async def _start_job(
    client: Client,
    settings: Settings,
    job_input: JobInput,
    fingerprint: str,
    reuse_policy: WorkflowIDReusePolicy,
) -> None:
    # FAIL rather than USE_EXISTING on a running duplicate. Neither starts a second workflow,
    # but only FAIL lets the public client API distinguish a retry (200) from the first
    # request (201).
    await client.start_workflow(
        JobWorkflow.run,
        job_input,
        id=job_input.job_id,
        task_queue=settings.task_queue,
        id_reuse_policy=reuse_policy,
        id_conflict_policy=WorkflowIDConflictPolicy.FAIL,
        memo={
            TENANT_MEMO: job_input.tenant_id,
            REQUEST_HASH_MEMO: fingerprint,
            MAX_BUDGET_MEMO: job_input.max_budget_micros,
        },
        search_attributes=start_search_attributes(job_input),
    )


def _failed_before_taking_effect(job: JobView) -> bool:
    """Return whether a job's workflow completed FAILED before any offer was tried.

    Such a job launched nothing and has nothing held, so a retry with its key may run it again.

    A job whose workflow was terminated has no state (`held` is None) and is never run again,
    because it may have left a hold or an instance behind.
    """
    return (
        job.status == JobStatus.FAILED
        and job.held == "0.000000"
        and job.attempts == 0
        and job.captured in (None, "0.000000")
    )


def start_search_attributes(job: JobInput) -> TypedSearchAttributes:
    """Return the search attributes that a job starts with: tenant, GPU type and SUBMITTED."""
    pairs = [
        SearchAttributePair(TENANT_ID, job.tenant_id),
        SearchAttributePair(JOB_STATUS, JobStatus.SUBMITTED.value),
    ]
    if job.gpu_type is not None:
        pairs.append(SearchAttributePair(GPU_TYPE, job.gpu_type))
    return TypedSearchAttributes(pairs)


async def _replay(client: Client, job_id: str, *, tenant: str, fingerprint: str) -> JobView:
    handle = client.get_workflow_handle_for(JobWorkflow.run, job_id)
    description = await describe_own_job(handle, tenant)
    if await description.memo_value(REQUEST_HASH_MEMO, None) != fingerprint:
        raise field_error(
            ("header", "Idempotency-Key"),
            "was already used with a different request; use a new key for a new job",
        )
    return await _read_job(handle, description)


async def describe_own_job(
    handle: WorkflowHandle[Any, JobState], tenant: str
) -> WorkflowExecutionDescription:
    """Describe the job's workflow; 404 if there is none or it belongs to another tenant.

    Both cases return the same body, so that a caller cannot learn which job ids exist.
    """
    not_found = HTTPException(status.HTTP_404_NOT_FOUND, f"job {handle.id} not found")
    try:
        description = await handle.describe()
    except RPCError as error:
        if error.status in (RPCStatusCode.NOT_FOUND, RPCStatusCode.INVALID_ARGUMENT):
            raise not_found from None
        raise

    if description.workflow_type != JobWorkflow.__name__:
        raise not_found
    if await description.memo_value(TENANT_MEMO, None) != tenant:
        raise not_found
    return description


async def _read_job(
    handle: WorkflowHandle[Any, JobState], description: WorkflowExecutionDescription
) -> JobView:
    max_budget_micros = await description.memo_value(MAX_BUDGET_MEMO, None)
    close_status = description.status

    if close_status == WorkflowExecutionStatus.RUNNING:
        state = await _query_state(handle)
        return view_from_state(state, max_budget_micros)
    if close_status == WorkflowExecutionStatus.COMPLETED:
        state = await handle.result()
        return view_from_state(state, max_budget_micros)

    detail = ""
    if close_status == WorkflowExecutionStatus.FAILED:
        try:
            await handle.result()
        except WorkflowFailureError as error:
            detail = str(error.cause or error)
    return view_from_close(
        handle.id,
        close_status or WorkflowExecutionStatus.FAILED,
        max_budget_micros=max_budget_micros,
        detail=detail,
        submitted_at=description.start_time.isoformat(),
        finished_at=description.close_time.isoformat() if description.close_time else None,
    )


async def _query_state(handle: WorkflowHandle[Any, JobState]) -> JobState:
    try:
        return await handle.query(JobWorkflow.state, rpc_timeout=QUERY_TIMEOUT)
    except (WorkflowQueryFailedError, WorkflowQueryRejectedError, RPCError) as error:
        logger.warning("job %s: the state query failed: %s", handle.id, error)
        raise HTTPException(
            status.HTTP_503_SERVICE_UNAVAILABLE,
            f"the state of job {handle.id} could not be read; check that a worker is running",
        ) from None

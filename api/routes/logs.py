"""`/v1/jobs/{jobId}/logs`: the output of a job's command, where its provider keeps it."""

import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.responses import PlainTextResponse

from api.auth import JOBS_READ
from api.deps import CurrentTenant, SettingsDep, TemporalClientDep, require_scope
from api.routes.jobs import JobId, describe_own_job, read_job_state
from workflows.job import JobWorkflow
from workflows.logs import LogSource, LogsRequest, LogsResult, LogsWorkflow

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

LOGS_TIMEOUT = timedelta(seconds=60)
"""Maximum time a logs request may take."""

DEFAULT_MAX_BYTES = 64 * 1024
MAX_MAX_BYTES = 1024 * 1024


@router.get(
    "/{job_id}/logs",
    dependencies=[Depends(require_scope(JOBS_READ))],
    response_class=PlainTextResponse,
    responses={
        status.HTTP_200_OK: {"content": {"text/plain": {}}},
        status.HTTP_404_NOT_FOUND: {
            "description": "No job with this id for this tenant, or no instance launched yet."
        },
    },
)
async def get_job_logs(
    job_id: JobId,
    tenant: CurrentTenant,
    client: TemporalClientDep,
    settings: SettingsDep,
    max_bytes: Annotated[
        int,
        Query(
            alias="maxBytes",
            ge=1,
            le=MAX_MAX_BYTES,
            description="Most bytes of each instance's output, from its end.",
        ),
    ] = DEFAULT_MAX_BYTES,
) -> PlainTextResponse:
    """Return the output tail of every instance the job ran on, oldest attempt first.

    Each instance's part starts with a `==> attempt N: provider/instance <==` line. A provider
    that keeps no output (RunPod, or an EC2 instance before its console output is published)
    gets a line saying why instead.
    """
    handle = client.get_workflow_handle_for(JobWorkflow.run, job_id)
    description = await describe_own_job(handle, tenant)
    state = await read_job_state(handle, description)
    sources = []
    if state is not None:
        sources = [
            LogSource(attempt=a.number, provider=a.offer.provider, instance_id=a.instance_id)
            for a in state.attempts
            if a.instance_id is not None
        ]
    if not sources:
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, f"job {job_id} has not launched an instance yet"
        )

    result: LogsResult = await client.execute_workflow(
        LogsWorkflow.run,
        LogsRequest(sources=sources, max_bytes=max_bytes),
        id=f"logs-{uuid.uuid4().hex}",
        task_queue=settings.task_queue,
        execution_timeout=LOGS_TIMEOUT,
    )
    return PlainTextResponse(_render(result))


def _render(result: LogsResult) -> str:
    lines = []
    for part in result.parts:
        source = part.source
        lines.append(f"==> attempt {source.attempt}: {source.provider}/{source.instance_id} <==\n")
        if part.available:
            lines.append(part.text if part.text.endswith("\n") or not part.text else part.text + "\n")
        else:
            lines.append(f"(logs not available: {part.reason})\n")
    return "".join(lines)

"""`POST /v1/jobs/{job_id}/io`: presigned URLs for a job's input and output objects.

A client submits the job first, then uploads its input with the returned `uploadUrl`. The
input is read when the job's instance is provisioned, so an input uploaded after that is not
seen by the job. The output archive exists once the job's command has exited and the provider
has uploaded it; until then `downloadUrl` returns 404.
"""

import logging

from fastapi import APIRouter, Depends, HTTPException, status
from pydantic import Field

from api.auth import JOBS_WRITE
from api.deps import CurrentTenant, SettingsDep, TemporalClientDep, require_scope
from api.models import CamelModel
from api.object_store import ObjectStoreDep
from api.routes.jobs import JobId, describe_own_job
from storage import InvalidObjectKey, job_input_key, job_output_key
from workflows.job import JobWorkflow

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])


class JobIoResponse(CamelModel):
    """Body of a `POST /v1/jobs/{jobId}/io` response."""

    upload_url: str = Field(
        description="PUT the job's input here as the raw request body, before the job starts."
    )
    download_url: str = Field(
        description="GET the gzip tar archive of the job's output directory here; 404 until "
        "the job's command has exited and its outputs are uploaded."
    )
    input_uri: str = Field(description="Location of the input object in the store.")
    output_uri: str = Field(description="Location of the output archive in the store.")
    expires_at: str = Field(description="ISO 8601 UTC time after which both URLs are rejected.")


@router.post(
    "/{job_id}/io",
    dependencies=[Depends(require_scope(JOBS_WRITE))],
    responses={
        status.HTTP_404_NOT_FOUND: {"description": "No job with this id for this tenant."},
    },
)
async def presign_job_io(
    job_id: JobId,
    tenant: CurrentTenant,
    client: TemporalClientDep,
    settings: SettingsDep,
    store: ObjectStoreDep,
) -> JobIoResponse:
    """Return presigned URLs to upload the job's input and download its outputs."""
    handle = client.get_workflow_handle_for(JobWorkflow.run, job_id)
    await describe_own_job(handle, tenant)

    try:
        input_key = job_input_key(job_id)
        output_key = job_output_key(job_id)
    except InvalidObjectKey as error:
        # Only a workflow started outside this API can have such an id.
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, str(error)) from None

    ttl = settings.io_url_ttl_seconds
    upload = store.presign_upload(input_key, expires_in_seconds=ttl)
    download = store.presign_download(output_key, expires_in_seconds=ttl)
    logger.info("job %s: presigned input and output URLs for tenant %s", job_id, tenant)
    return JobIoResponse(
        upload_url=upload.url,
        download_url=download.url,
        input_uri=store.uri(input_key),
        output_uri=store.uri(output_key),
        expires_at=min(upload.expires_at, download.expires_at).isoformat(),
    )

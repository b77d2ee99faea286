"""`POST /v1/jobs/{jobId}/io` against real job workflows on a Temporal test server.

No worker runs, so each job stays SUBMITTED; the route needs only the workflow's memo.
"""

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from config import Settings
from storage import job_input_key, job_output_key
from tests.api.conftest import SECRET, asgi_client, bearer, new_tenant
from tests.conftest import start_time_skipping_env
from tests.support.moto_s3 import moto_s3_server, new_bucket_store

TTL_SECONDS = 900
JOB_REQUEST = {
    "agentSpec": {"image": "python:3.11-slim", "cmd": "python train.py"},
    "maxBudget": "1",
}


@pytest.fixture(scope="module")
async def temporal_env() -> AsyncIterator[WorkflowEnvironment]:
    """A test server of this module's own, whose unworked jobs no other test reads."""
    env = await start_time_skipping_env()
    yield env
    await env.shutdown()


@pytest.fixture
def io_settings(tmp_path) -> Settings:
    return Settings(
        jwt_secret=SECRET,
        data_dir=tmp_path,
        task_queue=f"io-{uuid.uuid4().hex}",
        public_base_url="http://127.0.0.1:18080",
        io_url_ttl_seconds=TTL_SECONDS,
    )


@pytest.fixture
def app(io_settings, temporal_env):
    return create_app(io_settings, temporal_client=temporal_env.client)


@pytest.fixture
async def client(app) -> AsyncIterator[httpx.AsyncClient]:
    async with asgi_client(app) as http:
        yield http


async def submit(client: httpx.AsyncClient, tenant: str) -> str:
    response = await client.post("/v1/jobs", json=JOB_REQUEST, headers=bearer(tenant, "jobs:write"))
    assert response.status_code == 201, response.text
    return response.json()["jobId"]


async def test_presign_job_io_returns_signed_urls(client, app):
    tenant = new_tenant()
    job_id = await submit(client, tenant)
    before = int(time.time())

    response = await client.post(f"/v1/jobs/{job_id}/io", headers=bearer(tenant, "jobs:write"))

    after = int(time.time())
    assert response.status_code == 200, response.text
    body = response.json()
    assert sorted(body) == ["downloadUrl", "expiresAt", "inputUri", "outputUri", "uploadUrl"]

    upload = urlsplit(body["uploadUrl"])
    download = urlsplit(body["downloadUrl"])
    assert f"{upload.scheme}://{upload.netloc}" == "http://127.0.0.1:18080"
    assert upload.path == f"/v1/objects/jobs/{job_id}/input"
    assert download.path == f"/v1/objects/jobs/{job_id}/output.tar.gz"

    expires = int(parse_qs(upload.query)["expires"][0])
    assert before + TTL_SECONDS <= expires <= after + TTL_SECONDS
    assert parse_qs(download.query)["expires"] == [str(expires)]
    assert body["expiresAt"] == datetime.fromtimestamp(expires, UTC).isoformat()

    store = app.state.object_store
    assert body["inputUri"] == store.uri(job_input_key(job_id))
    assert body["outputUri"] == store.uri(job_output_key(job_id))
    assert body["inputUri"].startswith("file:///")


async def test_upload_url_of_job_stores_input(client, app):
    tenant = new_tenant()
    job_id = await submit(client, tenant)
    io = (await client.post(f"/v1/jobs/{job_id}/io", headers=bearer(tenant, "jobs:write"))).json()

    uploaded = await client.put(io["uploadUrl"], content=b"training data")
    output = await client.get(io["downloadUrl"])

    assert uploaded.status_code == 200
    assert app.state.object_store.path(job_input_key(job_id)).read_bytes() == b"training data"
    assert output.status_code == 404
    assert output.json()["detail"] == f"object jobs/{job_id}/output.tar.gz not found"


async def test_presign_job_io_of_other_tenant_returns_404(client):
    owner = new_tenant()
    job_id = await submit(client, owner)

    response = await client.post(
        f"/v1/jobs/{job_id}/io", headers=bearer(new_tenant(), "jobs:write")
    )

    assert response.status_code == 404
    assert response.json()["detail"] == f"job {job_id} not found"


async def test_presign_job_io_of_unknown_job_returns_404(client):
    response = await client.post(
        "/v1/jobs/job-does-not-exist/io", headers=bearer(new_tenant(), "jobs:write")
    )

    assert response.status_code == 404
    assert response.json()["detail"] == "job job-does-not-exist not found"


async def test_presign_job_io_without_write_scope_returns_403(client):
    tenant = new_tenant()
    job_id = await submit(client, tenant)

    response = await client.post(f"/v1/jobs/{job_id}/io", headers=bearer(tenant, "jobs:read"))

    assert response.status_code == 403
    assert response.json()["detail"] == "the token lacks the required scope jobs:write"


async def test_presign_job_io_without_token_returns_401(client):
    response = await client.post("/v1/jobs/job-any/io")

    assert response.status_code == 401


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    with moto_s3_server() as url:
        yield url


async def test_presign_job_io_with_s3_uploads_to_bucket(temporal_env, s3_endpoint, tmp_path):
    bucket_store = new_bucket_store(s3_endpoint)
    settings = Settings(
        jwt_secret=SECRET,
        data_dir=tmp_path,
        task_queue=f"io-{uuid.uuid4().hex}",
        storage="s3",
        s3_bucket=bucket_store.bucket,
        s3_endpoint_url=s3_endpoint,
        s3_access_key_id="test-access-key",
        s3_secret_access_key="test-secret-key",
        s3_path_style=True,
        io_url_ttl_seconds=TTL_SECONDS,
    )
    app = create_app(settings, temporal_client=temporal_env.client)
    tenant = new_tenant()

    async with asgi_client(app) as client:
        job_id = await submit(client, tenant)
        response = await client.post(
            f"/v1/jobs/{job_id}/io", headers=bearer(tenant, "jobs:write")
        )
    body = response.json()
    async with httpx.AsyncClient() as s3:
        uploaded = await s3.put(body["uploadUrl"], content=b"s3 input")
        missing_output = await s3.get(body["downloadUrl"])

    assert response.status_code == 200, response.text
    assert body["inputUri"] == f"s3://{bucket_store.bucket}/jobs/{job_id}/input"
    assert body["outputUri"] == f"s3://{bucket_store.bucket}/jobs/{job_id}/output.tar.gz"
    assert parse_qs(urlsplit(body["uploadUrl"]).query)["X-Amz-Expires"] == [str(TTL_SECONDS)]
    assert uploaded.status_code == 200
    assert missing_output.status_code == 404
    assert bucket_store.get_file(job_input_key(job_id), tmp_path / "input") is True
    assert (tmp_path / "input").read_bytes() == b"s3 input"

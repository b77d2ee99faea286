"""Job outputs through the running system: the worker's `local` provider uploads them, and the
API serves them at the URL that `POST /v1/jobs/{id}/io` presigns."""

import io
import tarfile
import uuid

import httpx

import ledger
from api.auth import mint_token
from config import DEV_JWT_SECRET
from tests.e2e.test_end_to_end import stack, wait_for_final  # noqa: F401 (fixture)

WRITE_OUTPUT = (
    "import os, pathlib;"
    " pathlib.Path(os.environ['CAC_OUTPUT_DIR'], 'answer.txt').write_text('42')"
)


def test_job_output_downloads_through_presigned_url(stack):  # noqa: F811
    tenant = f"e2e-io-{uuid.uuid4().hex[:8]}"
    engine = ledger.create_ledger_engine(stack["pg_url"])
    ledger.grant(engine, tenant_id=tenant, amount_micros=10_000_000, key="e2e-io-grant")
    engine.dispose()
    token = mint_token(DEV_JWT_SECRET, subject=tenant, scopes=["jobs:read", "jobs:write"])
    request = {
        "agentSpec": {"image": "python:3.11-slim", "cmd": ["python3", "-c", WRITE_OUTPUT]},
        "maxBudget": "1",
    }

    with httpx.Client(
        base_url=stack["base_url"], headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        job_id = client.post("/v1/jobs", json=request).raise_for_status().json()["jobId"]
        job = wait_for_final(client, job_id)
        presigned = client.post(f"/v1/jobs/{job_id}/io")

    # No bearer token: the signature in the URL is the authorization.
    download = httpx.get(presigned.json()["downloadUrl"], timeout=30)

    assert job["status"] == "SUCCEEDED", job
    assert presigned.status_code == 200, presigned.text
    assert download.status_code == 200, download.text
    with tarfile.open(fileobj=io.BytesIO(download.content), mode="r:gz") as archive:
        assert archive.getnames() == ["answer.txt"]
        assert archive.extractfile("answer.txt").read() == b"42"


DOUBLE_INPUT = (
    "import os, pathlib;"
    " text = pathlib.Path(os.environ['CAC_INPUT_DIR'], 'input').read_text();"
    " pathlib.Path(os.environ['CAC_OUTPUT_DIR'], 'doubled.txt').write_text(str(2 * int(text)))"
)


def test_job_waits_for_uploaded_input(stack):  # noqa: F811
    tenant = f"e2e-in-{uuid.uuid4().hex[:8]}"
    engine = ledger.create_ledger_engine(stack["pg_url"])
    ledger.grant(engine, tenant_id=tenant, amount_micros=10_000_000, key="e2e-in-grant")
    engine.dispose()
    token = mint_token(DEV_JWT_SECRET, subject=tenant, scopes=["jobs:read", "jobs:write"])
    request = {
        "agentSpec": {"image": "python:3.11-slim", "cmd": ["python3", "-c", DOUBLE_INPUT]},
        "maxBudget": "1",
        "waitForInput": True,
    }

    with httpx.Client(
        base_url=stack["base_url"], headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as client:
        job_id = client.post("/v1/jobs", json=request).raise_for_status().json()["jobId"]
        urls = client.post(f"/v1/jobs/{job_id}/io").raise_for_status().json()
        waiting = client.get(f"/v1/jobs/{job_id}").json()
        httpx.put(urls["uploadUrl"], content=b"21", timeout=30).raise_for_status()
        client.post(f"/v1/jobs/{job_id}/input-ready").raise_for_status()
        job = wait_for_final(client, job_id)

    download = httpx.get(urls["downloadUrl"], timeout=30)

    assert waiting["status"] == "SUBMITTED"
    assert job["status"] == "SUCCEEDED", job
    with tarfile.open(fileobj=io.BytesIO(download.content), mode="r:gz") as archive:
        assert archive.extractfile("doubled.txt").read() == b"42"

"""The whole system as a user runs it: Temporal dev server, worker and API as real processes."""

import json
import time
import uuid
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

import ledger
from api.auth import mint_token
from config import DEV_JWT_SECRET
from tests.support.processes import (
    free_port,
    start_cac,
    start_temporal_dev_server,
    stop,
    wait_until,
)

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "primes.json"
FINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pg_url):
    """A dev server, a worker with the `local` provider and the API, on free ports."""
    data_dir = tmp_path_factory.mktemp("cac")
    temporal_port = free_port()
    api_port = free_port()
    env = {
        "CAC_DEV_MODE": "true",
        "CAC_DATA_DIR": str(data_dir),
        "CAC_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "CAC_TASK_QUEUE": f"e2e-{uuid.uuid4().hex}",
        "CAC_API_PORT": str(api_port),
        "CAC_PROVIDERS": "local",
        "CAC_POLL_INTERVAL_SECONDS": "1",
        "DATABASE_URL": pg_url,
    }

    processes = [start_temporal_dev_server(data_dir, temporal_port, data_dir / "temporal.log")]
    try:
        processes.append(start_cac("worker", env, data_dir / "worker.log"))
        processes.append(start_cac("api", env, data_dir / "api.log"))
        base_url = f"http://127.0.0.1:{api_port}"
        wait_until(
            lambda: httpx.get(f"{base_url}/openapi.json").status_code == 200, 30, "the API"
        )
        yield {"base_url": base_url, "data_dir": data_dir, "pg_url": pg_url}
    finally:
        for process in reversed(processes):
            stop(process)


def wait_for_final(client: httpx.Client, job_id: str, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").raise_for_status().json()
        if job["status"] in FINAL:
            return job
        time.sleep(0.5)
    raise TimeoutError(f"job {job_id} did not finish in {timeout} s; last state {job}")


def test_example_job_runs_to_success_and_settles(stack):
    tenant = f"e2e-{uuid.uuid4().hex[:8]}"
    engine = ledger.create_ledger_engine(stack["pg_url"])
    ledger.grant(engine, tenant_id=tenant, amount_micros=10_000_000, key="e2e-grant")
    token = mint_token(DEV_JWT_SECRET, subject=tenant, scopes=["jobs:read", "jobs:write"])
    request = json.loads(EXAMPLE.read_text())
    headers = {"Authorization": f"Bearer {token}", "Idempotency-Key": "e2e-example-1"}

    with httpx.Client(base_url=stack["base_url"], headers=headers, timeout=30) as client:
        submitted = client.post("/v1/jobs", json=request)
        assert submitted.status_code == 201, submitted.text
        job_id = submitted.json()["jobId"]

        job = wait_for_final(client, job_id)

        replayed = client.post("/v1/jobs", json=request)

    assert job["status"] == "SUCCEEDED", job
    assert job["provider"] == "local"
    assert job["exitCode"] == 0
    result_file = stack["data_dir"] / "jobs" / f"{job_id}-1" / "output" / "result.json"
    assert json.loads(result_file.read_text())["count"] == 348_513

    captured = Decimal(job["captured"])
    assert captured > 0
    assert Decimal(job["released"]) == Decimal(request["maxBudget"]) - captured
    balances = ledger.get_balances(engine, tenant)
    assert balances.available_micros == 10_000_000 - ledger.credits_to_micros(captured)
    assert balances.held_micros == 0

    assert replayed.status_code == 200, replayed.text
    assert replayed.json()["jobId"] == job_id
    engine.dispose()

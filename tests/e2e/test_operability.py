"""Probes, metrics, traces and logs of `cac api` and `cac worker` as real processes, on a
Temporal dev server and PostgreSQL, exporting traces to a local OTLP collector stand-in."""

import json
import time
import uuid

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import ledger
from api.auth import mint_token
from tests.support.otlp_collector import otlp_collector
from tests.support.processes import (
    free_port,
    start_cac,
    start_temporal_dev_server,
    stop,
    wait_until,
)

SECRET = "operability-test-secret-long-enough-for-hs256"
FINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory, pg_url):
    """A dev server, a worker with the `fake` provider and both metrics endpoints, and the API,
    both tracing over OTLP."""
    data_dir = tmp_path_factory.mktemp("operability")
    temporal_port = free_port()
    ports = {"api": free_port(), "metrics": free_port(), "temporal_metrics": free_port()}

    with otlp_collector() as collector:
        env = {
            "CAC_JWT_SECRET": SECRET,
            "CAC_DATA_DIR": str(data_dir),
            "CAC_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
            "CAC_TASK_QUEUE": f"operability-{uuid.uuid4().hex}",
            "CAC_API_PORT": str(ports["api"]),
            "CAC_PROVIDERS": "fake",
            "CAC_FAKE_START_SECONDS": "0",
            "CAC_FAKE_RUN_SECONDS": "1",
            "CAC_POLL_INTERVAL_SECONDS": "1",
            "CAC_METRICS_PORT": str(ports["metrics"]),
            "CAC_TEMPORAL_METRICS_PORT": str(ports["temporal_metrics"]),
            "CAC_OTEL_EXPORTER": "otlp",
            "OTEL_EXPORTER_OTLP_ENDPOINT": collector.url,
            # Export every 100 ms instead of every 5 s, so the test need not wait.
            "OTEL_BSP_SCHEDULE_DELAY": "100",
            "DATABASE_URL": pg_url,
        }
        processes = [start_temporal_dev_server(data_dir, temporal_port, data_dir / "temporal.log")]
        try:
            processes.append(start_cac("worker", env, data_dir / "worker.log"))
            processes.append(start_cac("api", env, data_dir / "api.log"))
            base_url = f"http://127.0.0.1:{ports['api']}"
            wait_until(lambda: httpx.get(f"{base_url}/readyz").status_code == 200, 30, "the API")
            yield {
                "base_url": base_url,
                "ports": ports,
                "collector": collector,
                "data_dir": data_dir,
                "pg_url": pg_url,
            }
        finally:
            for process in reversed(processes):
                stop(process)


@pytest.fixture(scope="module")
def finished_job(stack) -> dict:
    """A job submitted through the API and followed to its end."""
    tenant = f"ops-{uuid.uuid4().hex[:8]}"
    engine = ledger.create_ledger_engine(stack["pg_url"])
    ledger.grant(engine, tenant_id=tenant, amount_micros=10_000_000, key="ops-grant")
    engine.dispose()
    token = mint_token(SECRET, subject=tenant, scopes=["jobs:read", "jobs:write"])
    request = {
        "agentSpec": {"image": "python:3.11-slim", "cmd": "python train.py"},
        "resourceHint": {"gpuType": "A100"},
        "maxBudget": "1",
    }

    headers = {"Authorization": f"Bearer {token}"}
    with httpx.Client(base_url=stack["base_url"], headers=headers, timeout=30) as client:
        submitted = client.post("/v1/jobs", json=request)
        assert submitted.status_code == 201, submitted.text
        job_id = submitted.json()["jobId"]
        deadline = time.monotonic() + 60
        job = client.get(f"/v1/jobs/{job_id}").json()
        while job["status"] not in FINAL and time.monotonic() < deadline:
            time.sleep(0.5)
            job = client.get(f"/v1/jobs/{job_id}").json()
    return {"tenant": tenant, "job": job}


def scrape(port: int) -> dict:
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    assert response.status_code == 200
    return {family.name: family for family in text_string_to_metric_families(response.text)}


def test_api_probes_answer_without_token(stack):
    health = httpx.get(f"{stack['base_url']}/healthz")
    ready = httpx.get(f"{stack['base_url']}/readyz")

    assert health.status_code == 200
    assert health.json() == {"status": "ok"}
    assert ready.status_code == 200
    assert ready.json()["down"] == []


def test_job_request_counted_in_api_metrics(stack, finished_job):
    families = scrape(stack["ports"]["api"])

    assert finished_job["job"]["status"] == "SUCCEEDED"
    submits = [
        sample
        for sample in families["cac_http_requests"].samples
        if sample.name == "cac_http_requests_total" and sample.labels["route"] == "/v1/jobs"
    ]
    assert [(sample.labels, sample.value) for sample in submits] == [
        ({"method": "POST", "route": "/v1/jobs", "status": "201"}, 1.0)
    ]


def test_worker_serves_project_and_sdk_metrics(stack, finished_job):
    project = scrape(stack["ports"]["metrics"])
    sdk = scrape(stack["ports"]["temporal_metrics"])

    assert finished_job["job"]["status"] == "SUCCEEDED"
    assert project["cac_credits_held_micros"].type == "counter"
    assert project["cac_credits_captured_micros"].type == "counter"
    completed = sdk["temporal_workflow_completed"].samples
    assert any(sample.labels["workflow_type"] == "JobWorkflow" for sample in completed)


def test_job_traced_from_api_to_worker_activities(stack, finished_job):
    collector = stack["collector"]
    wanted = {("cac-api", "POST /v1/jobs"), ("cac-worker", "RunActivity:settle_budget")}

    def exported() -> bool:
        return wanted <= {(service, name) for service, name, _ in collector.spans()}

    wait_until(exported, 15, "the spans of the job")
    spans = collector.spans()
    (request_trace,) = [trace for _, name, trace in spans if name == "POST /v1/jobs"]
    (start_trace,) = [trace for _, name, trace in spans if name == "StartWorkflow:JobWorkflow"]
    activity_traces = {trace for service, name, trace in spans if name.startswith("RunActivity:")}
    assert start_trace == request_trace
    assert activity_traces == {request_trace}


def test_worker_log_lines_carry_job_run_and_tenant(stack, finished_job):
    job_id = finished_job["job"]["jobId"]
    lines = [
        json.loads(line)
        for line in (stack["data_dir"] / "worker.log").read_text().splitlines()
        if line.startswith("{")
    ]

    workflow_lines = [
        line for line in lines if line.get("job_id") == job_id and "activity" not in line
    ]
    assert workflow_lines
    assert {line["tenant_id"] for line in workflow_lines} == {finished_job["tenant"]}
    assert len({line["run_id"] for line in workflow_lines}) == 1

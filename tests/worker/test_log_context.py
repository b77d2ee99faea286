"""JSON log lines carry the job id, the run id and the tenant from a real worker, and the trace
of the current span."""

import json
import logging
import uuid
from collections.abc import AsyncIterator, Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

import ledger
from activities.jobs import JobActivities
from config import Settings
from config.logging import JsonFormatter, tenant_log_context
from tests.conftest import TEST_SERVER
from tests.worker.logging_workflow import (
    TenantLoggingWorkflow,
    TenantOrder,
    log_in_activity,
    log_without_tenant,
)
from worker.log_context import TenantLogInterceptor, tenant_of
from worker.main import build_worker


class JsonLines(logging.Handler):
    """Formats each record with `JsonFormatter` and keeps the parsed line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.setFormatter(JsonFormatter())
        self.lines: list[dict] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))

    def with_message(self, message: str) -> dict:
        """Return the one line whose message is `message`, or starts with it and then the
        context that Temporal's loggers append in brackets."""
        (line,) = [
            line
            for line in self.lines
            if line["message"] == message or line["message"].startswith(f"{message} (")
        ]
        return line


@pytest.fixture
def json_lines() -> Iterator[JsonLines]:
    handler = JsonLines()
    root = logging.getLogger()
    previous_level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous_level)


@pytest.fixture(scope="module")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A test server of this module's own, as in tests/api/test_jobs_workflow.py."""
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=TEST_SERVER)
    yield env
    await env.shutdown()


async def test_worker_logs_carry_job_run_and_tenant(time_env, json_lines):
    task_queue = f"logs-{uuid.uuid4().hex}"
    job_id = f"job-{uuid.uuid4().hex}"
    order = TenantOrder(tenant_id="tenant-logs", note=job_id)

    async with Worker(
        time_env.client,
        task_queue=task_queue,
        workflows=[TenantLoggingWorkflow],
        activities=[log_in_activity, log_without_tenant],
        interceptors=[TenantLogInterceptor()],
    ):
        handle = await time_env.client.start_workflow(
            TenantLoggingWorkflow.run, order, id=job_id, task_queue=task_queue
        )
        await handle.result()

    in_workflow = json_lines.with_message(f"workflow for {job_id}")
    in_activity = json_lines.with_message(f"activity for {job_id}")
    without_tenant = json_lines.with_message(f"activity without tenant for {job_id}")
    assert in_workflow["job_id"] == job_id
    assert in_workflow["run_id"] == handle.result_run_id
    assert in_workflow["tenant_id"] == "tenant-logs"
    assert in_activity["job_id"] == job_id
    assert in_activity["run_id"] == handle.result_run_id
    assert in_activity["activity"] == "log_in_activity"
    assert in_activity["tenant_id"] == "tenant-logs"
    assert without_tenant["run_id"] == handle.result_run_id
    assert "tenant_id" not in without_tenant


async def test_build_worker_installs_tenant_interceptor(time_env, tmp_path):
    settings = Settings(data_dir=tmp_path, task_queue=f"logs-{uuid.uuid4().hex}")
    engine = ledger.create_ledger_engine(settings.database_url)
    activities = JobActivities(providers={}, ledger_engine=engine, poll_interval_seconds=5)

    worker = build_worker(time_env.client, settings, activities)
    engine.dispose()

    interceptors = worker.config()["interceptors"]
    assert [type(interceptor) for interceptor in interceptors] == [TenantLogInterceptor]


def test_log_line_inside_tenant_context_carries_tenant(json_lines):
    logger = logging.getLogger("tests.logging")

    with tenant_log_context("tenant-a"):
        logger.info("inside")
        logger.info("explicit", extra={"tenant_id": "tenant-b"})
    logger.info("outside")

    assert json_lines.with_message("inside")["tenant_id"] == "tenant-a"
    assert json_lines.with_message("explicit")["tenant_id"] == "tenant-b"
    assert "tenant_id" not in json_lines.with_message("outside")


def test_log_line_in_span_carries_trace_ids(json_lines):
    tracer = TracerProvider().get_tracer("tests.logging")
    logger = logging.getLogger("tests.logging")

    with tracer.start_as_current_span("settle") as span:
        logger.info("in span")
    logger.info("after span")

    context = span.get_span_context()
    line = json_lines.with_message("in span")
    assert line["trace_id"] == f"{context.trace_id:032x}"
    assert line["span_id"] == f"{context.span_id:016x}"
    assert "trace_id" not in json_lines.with_message("after span")


def test_tenant_of_returns_first_string_tenant():
    order = TenantOrder(tenant_id="tenant-c", note="n")

    assert tenant_of(["text", order]) == "tenant-c"
    assert tenant_of(["text", 3]) is None
    assert tenant_of([]) is None

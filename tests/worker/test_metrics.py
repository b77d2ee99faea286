"""The worker's metrics: the recording functions, the project's endpoint and the Temporal SDK's
endpoint, on a real time-skipping Temporal test server.

The metrics live in the process-wide default registry, so each test compares a series before
and after its own calls.
"""

import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Replayer, Worker

from activities.metrics import (
    AttemptOutcome,
    record_attempt,
    record_capture,
    record_hold,
    record_release,
)
from config import Settings
from tests.conftest import TEST_SERVER
from tests.support.processes import free_port
from tests.worker.status_workflow import StatusRecordingWorkflow, reach_status
from worker.client import connect_temporal
from worker.metrics import start_metrics_server, temporal_runtime


def sample(name: str, labels: dict[str, str] | None = None) -> float:
    return REGISTRY.get_sample_value(name, labels or {}) or 0.0


def status_changes(status: str) -> float:
    return sample("cac_job_status_changes_total", {"status": status})


@pytest.fixture(scope="module")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A test server of this module's own, as in tests/api/test_jobs_workflow.py."""
    env = await WorkflowEnvironment.start_time_skipping(test_server_existing_path=TEST_SERVER)
    yield env
    await env.shutdown()


def test_record_credits_adds_exact_micros():
    held = sample("cac_credits_held_micros_total")
    captured = sample("cac_credits_captured_micros_total")
    released = sample("cac_credits_released_micros_total")

    record_hold(5_000_000)
    record_capture(416_667)
    record_release(4_583_333)
    record_hold(0)

    assert sample("cac_credits_held_micros_total") == held + 5_000_000
    assert sample("cac_credits_captured_micros_total") == captured + 416_667
    assert sample("cac_credits_released_micros_total") == released + 4_583_333


@pytest.mark.parametrize("record", [record_hold, record_capture, record_release])
def test_record_credits_negative_amount_rejected(record):
    with pytest.raises(ValueError, match="amount_micros must not be negative, got -1"):
        record(-1)


def test_record_attempt_counts_by_provider_and_outcome():
    def attempts(outcome: str) -> float:
        return sample("cac_placement_attempts_total", {"provider": "fake", "outcome": outcome})

    launched, no_capacity = attempts("launched"), attempts("out_of_capacity")

    record_attempt("fake", AttemptOutcome.OUT_OF_CAPACITY)
    record_attempt("fake", "launched")

    assert attempts("launched") == launched + 1
    assert attempts("out_of_capacity") == no_capacity + 1


def test_record_attempt_unknown_outcome_rejected():
    with pytest.raises(ValueError, match="'timed_out' is not a valid AttemptOutcome"):
        record_attempt("fake", "timed_out")


async def test_job_status_counted_once_despite_replay(time_env):
    statuses = ["QUEUED", "PROVISIONING", "RUNNING"]
    before = {status: status_changes(status) for status in statuses}
    task_queue = f"metrics-{uuid.uuid4().hex}"

    # No workflow cache: every workflow task replays the history from the start, so each status
    # recorded by an earlier task is met again while replaying.
    async with Worker(
        time_env.client,
        task_queue=task_queue,
        workflows=[StatusRecordingWorkflow],
        activities=[reach_status],
        max_cached_workflows=0,
    ):
        handle = await time_env.client.start_workflow(
            StatusRecordingWorkflow.run,
            statuses,
            id=f"metrics-{uuid.uuid4().hex}",
            task_queue=task_queue,
        )
        reached = await handle.result()
    after_run = {status: status_changes(status) for status in statuses}
    await Replayer(workflows=[StatusRecordingWorkflow]).replay_workflow(
        await handle.fetch_history()
    )

    assert reached == statuses
    assert after_run == {status: before[status] + 1 for status in statuses}
    assert {status: status_changes(status) for status in statuses} == after_run


def test_metrics_server_serves_project_metrics():
    port = free_port()
    record_hold(1)

    server = start_metrics_server(Settings(metrics_port=port))
    try:
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)
    finally:
        assert server is not None
        server.shutdown()
        server.server_close()

    assert response.status_code == 200
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert families["cac_credits_held_micros"].type == "counter"
    assert families["cac_placement_attempts"].type == "counter"
    assert families["cac_job_status_changes"].type == "counter"


def test_metrics_endpoints_off_at_port_zero():
    settings = Settings()

    assert settings.metrics_port == 0
    assert settings.temporal_metrics_port == 0
    assert start_metrics_server(settings) is None
    assert temporal_runtime(settings) is None


def test_same_port_for_both_endpoints_rejected():
    with pytest.raises(
        ValueError, match="CAC_METRICS_PORT and CAC_TEMPORAL_METRICS_PORT are both 9100"
    ):
        Settings(metrics_port=9100, temporal_metrics_port=9100)


async def test_temporal_runtime_serves_sdk_metrics_of_worker(time_env):
    port = free_port()
    settings = Settings(
        temporal_address=time_env.client.service_client.config.target_host,
        temporal_metrics_port=port,
    )
    task_queue = f"sdk-metrics-{uuid.uuid4().hex}"

    client = await connect_temporal(settings, runtime=temporal_runtime(settings))
    async with Worker(
        client,
        task_queue=task_queue,
        workflows=[StatusRecordingWorkflow],
        activities=[reach_status],
    ):
        await client.execute_workflow(
            StatusRecordingWorkflow.run, [], id=f"sdk-{uuid.uuid4().hex}", task_queue=task_queue
        )
    response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5)

    assert response.status_code == 200
    names = {family.name for family in text_string_to_metric_families(response.text)}
    assert "temporal_request" in names
    assert "temporal_worker_start" in names
    assert "temporal_workflow_completed" in names

"""Tracing: exporter choice, OTLP export to a local collector stand-in, and one trace from an
API request through `JobWorkflow` to its activities on a time-skipping Temporal server.

OpenTelemetry accepts one global tracer provider per process. The `tracing` fixture installs
it, with an in-memory exporter, through `configure_tracing`. No other test installs one, and
without the tracing interceptor or the FastAPI instrumentation nothing creates spans.
"""

import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import timedelta

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import ConsoleSpanExporter, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from temporalio.contrib.opentelemetry import TracingInterceptor
from temporalio.testing import WorkflowEnvironment

import ledger
from activities.jobs import JobActivities
from api.app import create_app
from config import Settings
from config.telemetry import (
    build_span_exporter,
    configure_tracing,
    temporal_interceptors,
)
from providers.fake import FakeProvider
from tests.api.conftest import SECRET, asgi_client, bearer
from tests.conftest import start_time_skipping_env
from tests.support.otlp_collector import Collector, otlp_collector
from worker.client import connect_temporal
from worker.main import build_worker

RUN_SECONDS = 600
CREDIT = 1_000_000


@pytest.fixture
def collector() -> Iterator[Collector]:
    with otlp_collector() as running:
        yield running


def test_build_span_exporter_none_returns_none():
    assert build_span_exporter(Settings(otel_exporter="none")) is None


def test_build_span_exporter_console_returns_console_exporter():
    assert isinstance(build_span_exporter(Settings(otel_exporter="console")), ConsoleSpanExporter)


def test_otel_exporter_unknown_value_rejected(monkeypatch):
    monkeypatch.setenv("CAC_OTEL_EXPORTER", "jaeger")

    with pytest.raises(ValueError, match="otel_exporter"):
        Settings()


def test_temporal_interceptors_only_with_tracing_on():
    assert temporal_interceptors(Settings()) == []
    (interceptor,) = temporal_interceptors(Settings(otel_exporter="otlp"))
    assert isinstance(interceptor, TracingInterceptor)


def test_configure_tracing_off_installs_nothing():
    assert configure_tracing(Settings(), "cac-test") is None


def test_otlp_exporter_posts_spans_to_standard_endpoint(collector, monkeypatch):
    monkeypatch.setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.url)
    exporter = build_span_exporter(Settings(otel_exporter="otlp"))
    assert isinstance(exporter, OTLPSpanExporter)
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: "cac-test-otlp"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))

    with provider.get_tracer("test").start_as_current_span("settle job-1"):
        pass
    provider.shutdown()

    (request,) = collector.requests
    assert request.path == "/v1/traces"
    assert request.content_type == "application/x-protobuf"
    assert [(service, name) for service, name, _ in request.spans()] == [
        ("cac-test-otlp", "settle job-1")
    ]


@dataclass
class Tracing:
    """The process's tracer provider and the in-memory exporter behind it."""

    provider: TracerProvider
    exporter: InMemorySpanExporter

    def finished_spans(self) -> list[ReadableSpan]:
        self.provider.force_flush()
        return list(self.exporter.get_finished_spans())


@pytest.fixture(scope="module")
def tracing() -> Tracing:
    exporter = InMemorySpanExporter()
    provider = configure_tracing(Settings(otel_exporter="console"), "cac-test", exporter=exporter)
    assert provider is not None
    return Tracing(provider=provider, exporter=exporter)


@pytest.fixture(scope="module")
async def time_env() -> AsyncIterator[WorkflowEnvironment]:
    """A test server of this module's own, as in tests/api/test_jobs_workflow.py."""
    env = await start_time_skipping_env()
    yield env
    await env.shutdown()


@pytest.fixture(scope="module")
def traced_settings(tmp_path_factory, time_env, pg_url) -> Settings:
    return Settings(
        jwt_secret=SECRET,
        data_dir=tmp_path_factory.mktemp("tracing"),
        task_queue=f"tracing-{uuid.uuid4().hex}",
        providers=["fake"],
        otel_exporter="console",
        temporal_address=time_env.client.service_client.config.target_host,
        DATABASE_URL=pg_url,
    )


@pytest.fixture(scope="module")
async def traced_api(tracing, traced_settings, pg_url) -> AsyncIterator[httpx.AsyncClient]:
    """An instrumented API and a worker, both on a client from `connect_temporal`."""
    client = await connect_temporal(traced_settings)
    engine = ledger.create_ledger_engine(pg_url)
    provider = FakeProvider(
        price_per_hour_micros=2_500_000,
        gpu_types=["A100"],
        start_seconds=0,
        run_seconds=RUN_SECONDS,
    )
    activities = JobActivities(
        providers={provider.name: provider}, ledger_engine=engine, poll_interval_seconds=60
    )
    app = create_app(traced_settings, temporal_client=client)
    async with build_worker(client, traced_settings, activities):
        async with app.router.lifespan_context(app), asgi_client(app) as http:
            yield http
    engine.dispose()


async def test_job_request_traced_as_one_trace(traced_api, time_env, tracing, pg_url):
    tenant = f"tenant-{uuid.uuid4().hex[:12]}"
    engine = ledger.create_ledger_engine(pg_url)
    ledger.grant(engine, tenant_id=tenant, amount_micros=10 * CREDIT, key="tracing-grant")
    engine.dispose()
    tracing.exporter.clear()

    submitted = await traced_api.post(
        "/v1/jobs",
        json={
            "agentSpec": {"image": "python:3.11-slim", "cmd": "python train.py"},
            "resourceHint": {"gpuType": "A100"},
            "maxBudget": "5",
        },
        headers=bearer(tenant, "jobs:write"),
    )
    job_id = submitted.json()["jobId"]
    await time_env.sleep(timedelta(seconds=RUN_SECONDS + 300))
    await time_env.client.get_workflow_handle(job_id).result()
    spans = tracing.finished_spans()

    assert submitted.status_code == 201
    (request_span,) = [span for span in spans if span.name == "POST /v1/jobs"]
    assert request_span.kind == SpanKind.SERVER
    trace_id = request_span.context.trace_id
    by_name = {span.name: span for span in spans}
    start = by_name["StartWorkflow:JobWorkflow"]
    assert start.context.trace_id == trace_id
    assert start.parent is not None
    assert start.parent.span_id == request_span.context.span_id
    for name in (
        "RunWorkflow:JobWorkflow",
        "StartActivity:hold_budget",
        "RunActivity:hold_budget",
        "RunActivity:provision_instance",
        "RunActivity:check_instance",
        "RunActivity:terminate_instance",
        "RunActivity:settle_budget",
    ):
        assert by_name[name].context.trace_id == trace_id, name
    assert {span.context.trace_id for span in spans} == {trace_id}
    hold_start, hold_run = by_name["StartActivity:hold_budget"], by_name["RunActivity:hold_budget"]
    assert hold_start.parent.span_id == start.context.span_id
    assert hold_run.parent.span_id == hold_start.context.span_id


async def test_probe_requests_not_traced(traced_api, tracing):
    tracing.exporter.clear()

    health = await traced_api.get("/healthz")
    scrape = await traced_api.get("/metrics")

    assert health.status_code == 200
    assert scrape.status_code == 200
    assert tracing.finished_spans() == []

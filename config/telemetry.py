"""OpenTelemetry tracing of the API and the worker, switched by `CAC_OTEL_EXPORTER`.

With tracing on, one trace follows a job from the API request through `start_workflow` into
the workflow and each of its activities:

- the FastAPI instrumentation opens a server span for each request;
- Temporal's `TracingInterceptor` on the client adds a `StartWorkflow` span and sends its
  context to the worker in the workflow's headers;
- the same interceptor on the worker adds `RunWorkflow`, `StartActivity` and `RunActivity`
  spans under that context.

Each process installs its tracer provider once at start (`configure_tracing`); the
interceptor and the instrumentation use that global provider.
"""

import os

from fastapi import FastAPI
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, ConsoleSpanExporter, SpanExporter
from temporalio.contrib.opentelemetry import TracingInterceptor

from config.settings import Settings

UNTRACED_PATHS = "healthz,readyz,metrics"
"""Paths (comma-separated regular expressions, as the FastAPI instrumentation takes them) whose
requests get no span, because probes and scrapes would bury the job traces."""


def tracing_enabled(settings: Settings) -> bool:
    """Return whether `settings` turn tracing on."""
    return settings.otel_exporter != "none"


def build_span_exporter(settings: Settings) -> SpanExporter | None:
    """Build the exporter that `CAC_OTEL_EXPORTER` names; None when tracing is off.

    The OTLP exporter sends protobuf over HTTP and reads the standard variables:
    `OTEL_EXPORTER_OTLP_ENDPOINT` (default http://localhost:4318, with `/v1/traces`
    appended), or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` used as it is, and
    `OTEL_EXPORTER_OTLP_HEADERS`.
    """
    if settings.otel_exporter == "console":
        return ConsoleSpanExporter()
    if settings.otel_exporter == "otlp":
        return OTLPSpanExporter()
    return None


def configure_tracing(
    settings: Settings, service_name: str, *, exporter: SpanExporter | None = None
) -> TracerProvider | None:
    """Install the process-wide tracer provider, if tracing is on.

    OpenTelemetry accepts one global provider per process and ignores later ones with a
    warning, so call this once, at the start of `cac api` or `cac worker`. The provider
    exports in batches from a background thread and flushes when the process exits.

    Args:
        settings: Configuration; `otel_exporter` picks the exporter.
        service_name: `service.name` of the spans, unless `OTEL_SERVICE_NAME` is set.
        exporter: Exporter to use instead of the one `settings` name, as tests do with an
            in-memory exporter. It is used only when tracing is on.

    Returns:
        The provider, or None when `CAC_OTEL_EXPORTER` is `none`.
    """
    if not tracing_enabled(settings):
        return None
    exporter = exporter or build_span_exporter(settings)
    assert exporter is not None

    name = os.environ.get("OTEL_SERVICE_NAME") or service_name
    provider = TracerProvider(resource=Resource.create({SERVICE_NAME: name}))
    provider.add_span_processor(BatchSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    return provider


def temporal_interceptors(settings: Settings) -> list[TracingInterceptor]:
    """Return the interceptors for a Temporal client: the tracing one when tracing is on.

    A worker built on a client with this interceptor traces its workflows and activities too.
    """
    return [TracingInterceptor()] if tracing_enabled(settings) else []


def instrument_api(app: FastAPI, settings: Settings) -> None:
    """Open a server span for each API request, except probes and scrapes, when tracing is on."""
    if not tracing_enabled(settings):
        return
    FastAPIInstrumentor.instrument_app(
        app, excluded_urls=UNTRACED_PATHS, exclude_spans=["receive", "send"]
    )

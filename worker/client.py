"""The Temporal client that the worker, the API and the command line share."""

from temporalio.client import Client
from temporalio.runtime import Runtime

from config import Settings
from config.telemetry import temporal_interceptors


async def connect_temporal(settings: Settings, *, runtime: Runtime | None = None) -> Client:
    """Connect to the configured Temporal frontend and namespace.

    With tracing on (`CAC_OTEL_EXPORTER`), the client carries the tracing interceptor, so its
    workflow starts are traced, and so are the workflows and activities of a worker built on it.

    Args:
        settings: Configuration.
        runtime: Temporal runtime for the client and its workers, for example one that
            exports the SDK's metrics; None uses the default runtime.
    """
    return await Client.connect(
        settings.temporal_address,
        namespace=settings.temporal_namespace,
        interceptors=temporal_interceptors(settings),
        runtime=runtime,
    )

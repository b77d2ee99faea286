"""The worker's two Prometheus endpoints.

- `CAC_METRICS_PORT`: this project's metrics (`activities.metrics`), served by
  `prometheus_client` from a daemon thread.
- `CAC_TEMPORAL_METRICS_PORT`: the Temporal SDK's own metrics (workflow and activity task
  latencies, poller counts, failures), served by the SDK's Rust core.

Both bind to `CAC_METRICS_HOST`, both serve `GET /metrics`, and port 0 turns either off.
"""

import logging
from http.server import HTTPServer

from prometheus_client import start_http_server
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig

# Imported for its side effect: it registers the project's metrics, so that the endpoint lists
# them from the first scrape, the unlabelled ones at zero.
import activities.metrics  # noqa: F401
from config import Settings

logger = logging.getLogger(__name__)


def start_metrics_server(settings: Settings) -> HTTPServer | None:
    """Serve the default Prometheus registry on `CAC_METRICS_HOST`:`CAC_METRICS_PORT`.

    Returns:
        The running server, which `shutdown()` stops; None when the port is 0.

    Raises:
        OSError: the address is in use or cannot be bound.
    """
    if not settings.metrics_port:
        return None
    server, _thread = start_http_server(settings.metrics_port, addr=settings.metrics_host)
    logger.info(
        "serving worker metrics on http://%s:%d/metrics",
        settings.metrics_host,
        settings.metrics_port,
    )
    return server


def temporal_runtime(settings: Settings) -> Runtime | None:
    """Build a Temporal runtime that serves the SDK's metrics on
    `CAC_METRICS_HOST`:`CAC_TEMPORAL_METRICS_PORT`.

    The endpoint starts with the runtime and lives as long as the process. Pass the runtime to
    `connect_temporal`, so that the client and the workers built on it report through it.

    Returns:
        The runtime, or None when the port is 0, which leaves the SDK's default runtime.

    Raises:
        RuntimeError: the address is in use or cannot be bound.
    """
    if not settings.temporal_metrics_port:
        return None
    address = f"{settings.metrics_host}:{settings.temporal_metrics_port}"
    runtime = Runtime(telemetry=TelemetryConfig(metrics=PrometheusConfig(bind_address=address)))
    logger.info("serving Temporal SDK metrics on http://%s/metrics", address)
    return runtime

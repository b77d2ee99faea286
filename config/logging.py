"""JSON log lines for the API, the worker and `cac dev`.

Temporal's workflow and activity loggers attach a `temporal_workflow` or `temporal_activity`
dict to each record. The formatter lifts the workflow id out of it as `job_id`, because the
workflow id is the job id, so every line about a job can be found by that one field, and the
workflow's run id as `run_id`.

A line also carries `tenant_id` while code runs inside `tenant_log_context` (the worker enters
it for each workflow and activity whose input names a tenant) or after `set_log_tenant` (the
API calls it for each authenticated request), and `trace_id` and `span_id`
while an OpenTelemetry span is current, so that a log line leads to its trace.
"""

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import UTC, datetime

from opentelemetry import trace

_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}

_tenant_id: ContextVar[str | None] = ContextVar("cac_log_tenant_id", default=None)


@contextmanager
def tenant_log_context(tenant_id: str | None) -> Iterator[None]:
    """Add `tenant_id` to every JSON log line written in this context; None adds nothing."""
    token = _tenant_id.set(tenant_id)
    try:
        yield
    finally:
        try:
            _tenant_id.reset(token)
        except ValueError:
            # A workflow coroutine that the worker closes at shutdown exits in another
            # context than the one it entered. That context is gone, so nothing needs undoing.
            pass


def set_log_tenant(tenant_id: str) -> None:
    """Add `tenant_id` to the JSON log lines written in the rest of the current task, as the
    API does for a request once its token is verified."""
    _tenant_id.set(tenant_id)


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON object per line, with its extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }

        temporal = getattr(record, "temporal_workflow", None) or getattr(
            record, "temporal_activity", None
        )
        if isinstance(temporal, dict):
            entry["job_id"] = temporal.get("workflow_id")
            entry["run_id"] = temporal.get("run_id") or temporal.get("workflow_run_id")
            if "activity_type" in temporal:
                entry["activity"] = temporal["activity_type"]
                entry["attempt"] = temporal.get("attempt")

        tenant_id = getattr(record, "tenant_id", None) or _tenant_id.get()
        if tenant_id is not None:
            entry["tenant_id"] = tenant_id

        span_context = trace.get_current_span().get_span_context()
        if span_context.is_valid:
            entry["trace_id"] = trace.format_trace_id(span_context.trace_id)
            entry["span_id"] = trace.format_span_id(span_context.span_id)

        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRIBUTES and key not in entry and not key.startswith("temporal_"):
                entry[key] = value

        if record.exc_info:
            entry["error"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str = "INFO") -> None:
    """Send JSON log lines at `level` and above to standard error."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)

"""JSON log lines for the API, the worker and `cac dev`.

Temporal's workflow and activity loggers attach a `temporal_workflow` or `temporal_activity`
dict to each record. The formatter lifts the workflow id out of it as `job_id`, because the
workflow id is the job id, so every line about a job can be found by that one field.
"""

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD_ATTRIBUTES = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime"}


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

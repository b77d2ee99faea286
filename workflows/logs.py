"""`LogsWorkflow`: the output of a job's instances, for `GET /v1/jobs/{jobId}/logs`.

A short workflow rather than a direct call from the API, for the same reason as quotes: the
providers, their credentials and the `local` provider's files are on the workers.
"""

from dataclasses import dataclass, field
from datetime import timedelta

from temporalio import workflow

with workflow.unsafe.imports_passed_through():
    from activities.jobs import JobActivities
    from activities.types import LogsInput

READ_TIMEOUT = timedelta(seconds=30)


@dataclass
class LogSource:
    """One instance of a job."""

    attempt: int
    provider: str
    instance_id: str


@dataclass
class LogsRequest:
    """Input of `LogsWorkflow`."""

    sources: list[LogSource]
    max_bytes: int
    """Most bytes read from each instance's output, from its end."""


@dataclass
class LogPart:
    """The output of one instance, or why it is not available."""

    source: LogSource
    available: bool
    text: str = ""
    reason: str = ""


@dataclass
class LogsResult:
    """Output of `LogsWorkflow`, one part per source in order."""

    parts: list[LogPart] = field(default_factory=list)


@workflow.defn
class LogsWorkflow:
    """Reads the output of each instance a job ran on."""

    @workflow.run
    async def run(self, request: LogsRequest) -> LogsResult:
        """Return each source's output tail, in the order of the request."""
        result = LogsResult()
        for source in request.sources:
            output = await workflow.execute_activity_method(
                JobActivities.read_logs,
                LogsInput(
                    provider=source.provider,
                    instance_id=source.instance_id,
                    max_bytes=request.max_bytes,
                ),
                start_to_close_timeout=READ_TIMEOUT,
            )
            result.parts.append(
                LogPart(
                    source=source,
                    available=output.available,
                    text=output.text,
                    reason=output.reason,
                )
            )
        return result

"""A workflow that records job statuses as `JobWorkflow` should: only when not replaying.

Kept apart from the tests because the workflow sandbox re-imports this module, and the tests'
imports (httpx, the test server) are not allowed in it.
"""

from datetime import timedelta

from temporalio import activity, workflow

with workflow.unsafe.imports_passed_through():
    from activities.metrics import record_job_status


@activity.defn
async def reach_status(status: str) -> str:
    """Stand in for the side effect that leads to `status`."""
    return status


@workflow.defn
class StatusRecordingWorkflow:
    """Records each status, then runs an activity, so each status has its own workflow task."""

    @workflow.run
    async def run(self, statuses: list[str]) -> list[str]:
        reached = []
        for status in statuses:
            if not workflow.unsafe.is_replaying():
                record_job_status(status)
            reached.append(
                await workflow.execute_activity(
                    reach_status, status, start_to_close_timeout=timedelta(seconds=10)
                )
            )
        return reached

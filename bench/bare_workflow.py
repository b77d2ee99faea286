"""`BareWorkflow`: the baseline of `bench/throughput.py`, in a module of its own, because
Temporal's workflow sandbox re-imports a workflow's module and cannot import `__main__`."""

import asyncio
from datetime import timedelta

from temporalio import activity, workflow

POLL_BEFORE_ACTIVITY = 4
"""Index of the activity before which the bare workflow waits one second, as a job's first
status check waits for its poll interval."""


@activity.defn
async def noop(number: int) -> int:
    """Return at once; the bare workflow's stand-in for each of the job's activities."""
    return number


@workflow.defn
class BareWorkflow:
    """As many activities as a zero-length job, and its one poll timer, with no work."""

    @workflow.run
    async def run(self, activities: int) -> int:
        for number in range(activities):
            if number == POLL_BEFORE_ACTIVITY:
                await asyncio.sleep(1)
            await workflow.execute_activity(
                noop, number, start_to_close_timeout=timedelta(seconds=30)
            )
        return activities

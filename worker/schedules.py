"""Temporal Schedules that the worker keeps in place."""

import logging
from datetime import timedelta

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
)

from config import Settings
from workflows.maintenance import ExpireGrantsInput, ExpireGrantsWorkflow

logger = logging.getLogger(__name__)

EXPIRE_GRANTS_SCHEDULE_ID = "expire-grants"
EXPIRE_GRANTS_INTERVAL = timedelta(minutes=5)
"""How often expired grants leave available balances; an expired grant stops funding holds at
once, so this interval only delays the expire transaction, never lets expired credits be spent."""


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """Create the grant expiry schedule unless it exists; an existing one is left as it is."""
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            ExpireGrantsWorkflow.run,
            ExpireGrantsInput(),
            id=EXPIRE_GRANTS_SCHEDULE_ID,
            task_queue=settings.task_queue,
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=EXPIRE_GRANTS_INTERVAL)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(EXPIRE_GRANTS_SCHEDULE_ID, schedule)
    except ScheduleAlreadyRunningError:
        return
    logger.info(
        "created schedule %s every %s on task queue %s",
        EXPIRE_GRANTS_SCHEDULE_ID,
        EXPIRE_GRANTS_INTERVAL,
        settings.task_queue,
    )

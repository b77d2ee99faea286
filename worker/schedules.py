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
from workflows.maintenance import (
    ExpireGrantsInput,
    ExpireGrantsWorkflow,
    OrphanSweepInput,
    OrphanSweepWorkflow,
)

logger = logging.getLogger(__name__)

EXPIRE_GRANTS_SCHEDULE_ID = "expire-grants"
EXPIRE_GRANTS_INTERVAL = timedelta(minutes=5)
"""Interval between two expiry passes. Holds stop drawing on an expired grant at once, so the
interval only delays the expire transaction and never lets expired credits be spent."""


ORPHAN_SWEEP_SCHEDULE_ID = "orphan-sweep"
ORPHAN_SWEEP_INTERVAL = timedelta(minutes=10)
"""How often instances of finished jobs are looked for; at most this long an orphan bills."""


async def ensure_schedules(client: Client, settings: Settings) -> None:
    """Create the grant expiry and orphan sweep schedules unless they exist; an existing one is
    left as it is."""
    await _ensure_schedule(
        client,
        settings,
        EXPIRE_GRANTS_SCHEDULE_ID,
        ExpireGrantsWorkflow.run,
        ExpireGrantsInput(),
        EXPIRE_GRANTS_INTERVAL,
    )
    await _ensure_schedule(
        client,
        settings,
        ORPHAN_SWEEP_SCHEDULE_ID,
        OrphanSweepWorkflow.run,
        OrphanSweepInput(),
        ORPHAN_SWEEP_INTERVAL,
    )


async def _ensure_schedule(
    client: Client, settings: Settings, schedule_id: str, run, argument, every: timedelta
) -> None:
    schedule = Schedule(
        action=ScheduleActionStartWorkflow(
            run, argument, id=schedule_id, task_queue=settings.task_queue
        ),
        spec=ScheduleSpec(intervals=[ScheduleIntervalSpec(every=every)]),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )
    try:
        await client.create_schedule(schedule_id, schedule)
    except ScheduleAlreadyRunningError:
        return
    logger.info(
        "created schedule %s every %s on task queue %s", schedule_id, every, settings.task_queue
    )

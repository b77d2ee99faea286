"""Runs the worker that executes `JobWorkflow` and its activities."""

import asyncio
import logging

from temporalio.client import Client
from temporalio.worker import Worker

import ledger
from activities.jobs import JobActivities
from config import Settings
from providers.registry import build_providers
from worker.client import connect_temporal
from workflows.job import JobWorkflow

logger = logging.getLogger(__name__)


def build_worker(client: Client, settings: Settings, activities: JobActivities) -> Worker:
    """Build a worker for the job workflow on the configured task queue."""
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=[JobWorkflow],
        activities=activities.all(),
    )


def build_activities(settings: Settings) -> JobActivities:
    """Build the activities with the enabled providers and the ledger database."""
    engine = ledger.create_ledger_engine(settings.database_url)
    return JobActivities(
        providers=build_providers(settings),
        ledger_engine=engine,
        poll_interval_seconds=settings.poll_interval_seconds,
    )


async def run_worker(settings: Settings) -> None:
    """Migrate the ledger, connect to Temporal and run the worker until cancelled."""
    await asyncio.to_thread(ledger.upgrade, settings.database_url)
    client = await connect_temporal(settings)
    activities = build_activities(settings)
    worker = build_worker(client, settings, activities)
    logger.info(
        "worker polling task queue %s on %s with providers %s",
        settings.task_queue,
        settings.temporal_address,
        ",".join(settings.providers),
    )
    await worker.run()

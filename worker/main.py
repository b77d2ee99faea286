"""Runs the worker that executes the job and maintenance workflows and their activities."""

import asyncio
import logging

from temporalio.client import Client
from temporalio.worker import Worker

import ledger
from activities.jobs import JobActivities
from activities.maintenance import MaintenanceActivities
from config import Settings
from providers.registry import build_providers
from worker.client import connect_temporal
from worker.schedules import ensure_schedules
from workflows.job import JobWorkflow
from workflows.maintenance import ExpireGrantsWorkflow

logger = logging.getLogger(__name__)


def build_worker(
    client: Client,
    settings: Settings,
    activities: JobActivities,
    maintenance: MaintenanceActivities | None = None,
) -> Worker:
    """Build a worker for the job workflow, and the maintenance workflow if given its
    activities, on the configured task queue."""
    workflows: list[type] = [JobWorkflow]
    activity_methods = activities.all()
    if maintenance is not None:
        workflows.append(ExpireGrantsWorkflow)
        activity_methods += maintenance.all()
    return Worker(
        client,
        task_queue=settings.task_queue,
        workflows=workflows,
        activities=activity_methods,
    )


def build_activities(settings: Settings) -> tuple[JobActivities, MaintenanceActivities]:
    """Build the activities with the enabled providers and the ledger database."""
    engine = ledger.create_ledger_engine(settings.database_url)
    jobs = JobActivities(
        providers=build_providers(settings),
        ledger_engine=engine,
        poll_interval_seconds=settings.poll_interval_seconds,
    )
    return jobs, MaintenanceActivities(ledger_engine=engine)


async def run_worker(settings: Settings) -> None:
    """Migrate the ledger, connect to Temporal, keep the schedules in place and run the worker
    until cancelled."""
    await asyncio.to_thread(ledger.upgrade, settings.database_url)
    client = await connect_temporal(settings)
    await ensure_schedules(client, settings)
    jobs, maintenance = build_activities(settings)
    worker = build_worker(client, settings, jobs, maintenance)
    logger.info(
        "worker polling task queue %s on %s with providers %s",
        settings.task_queue,
        settings.temporal_address,
        ",".join(settings.providers),
    )
    await worker.run()

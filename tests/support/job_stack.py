"""The whole system on loopback for client tests: a Temporal dev server and a worker on an
event loop of their own, and the API under uvicorn on a free port of 127.0.0.1.

The worker and the API run in threads, so a test can call the blocking `cac` command line or
the synchronous SDK client while jobs make progress. A dev server rather than the time-skipping
test server, because the test server cannot list workflows, which `GET /v1/jobs` needs. Jobs
therefore run in real time, so the providers here finish within seconds:

- `fast` (fake): T4 jobs that succeed one second after launch, at 3.6 credits per hour, so
  each costs exactly 0.001 credits.
- `slow` (fake): A100 jobs that stay PROVISIONING for an hour, for cancellation.
- `local`: CPU jobs that run their command on this machine and upload their outputs to the
  API's local object store.

No provider offers an H100, so an H100 job ends FAILED at once.
"""

import asyncio
import threading
import uuid
from collections.abc import Coroutine, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import uvicorn
from sqlalchemy.engine import Engine

import ledger
from activities.jobs import JobActivities
from api.app import create_app
from api.auth import mint_token
from config import Settings
from providers.fake import FakeProvider
from providers.local import LocalProvider
from storage import build_object_store
from tests.api.conftest import SECRET
from tests.conftest import fresh_pg_database, start_dev_server_env
from tests.support.processes import free_port, wait_until
from worker.main import build_worker

ResultT = TypeVar("ResultT")

CREDIT = 1_000_000
FAST_PRICE_PER_HOUR_MICROS = 3_600_000
LOCAL_PRICE_PER_HOUR_MICROS = 360_000
STARTUP_TIMEOUT_SECONDS = 30


@dataclass(frozen=True)
class JobStack:
    """A running system: the API's URL and what tests need to set up tenants."""

    url: str
    """Root URL of the API."""
    settings: Settings
    engine: Engine
    """Engine of the ledger that the API and the worker use."""

    def new_tenant(self, credits: int = 10) -> str:
        """Create a tenant with `credits` credits granted and return its id."""
        tenant = f"tenant-{uuid.uuid4().hex[:12]}"
        ledger.grant(self.engine, tenant_id=tenant, amount_micros=credits * CREDIT, key="grant")
        return tenant

    def token(self, tenant: str, *scopes: str) -> str:
        """Return a bearer token of `tenant` with `scopes`, by default every job scope."""
        granted = list(scopes) or ["jobs:read", "jobs:write", "billing:read"]
        return mint_token(SECRET, subject=tenant, scopes=granted)


class _BackgroundLoop:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, ResultT]) -> ResultT:
        """Run `coroutine` on the loop and return its result."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        return future.result(timeout=STARTUP_TIMEOUT_SECONDS)

    def stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()


@contextmanager
def running_job_stack(data_dir: Path) -> Iterator[JobStack]:
    """Start the system with its data in `data_dir`, yield it, and stop it."""
    with ExitStack() as cleanup:
        loop = _BackgroundLoop()
        cleanup.callback(loop.stop)
        database_url = cleanup.enter_context(fresh_pg_database())
        ledger.upgrade(database_url)
        engine = ledger.create_ledger_engine(database_url)
        cleanup.callback(engine.dispose)

        env = loop.run(start_dev_server_env())
        cleanup.callback(lambda: loop.run(env.shutdown()))
        port = free_port()
        settings = Settings(
            jwt_secret=SECRET,
            data_dir=data_dir,
            task_queue=f"client-{uuid.uuid4().hex}",
            DATABASE_URL=database_url,
            temporal_address=env.client.service_client.config.target_host,
            api_port=port,
        )
        worker, worker_task = loop.run(_start_worker(env.client, settings, engine))
        cleanup.callback(lambda: loop.run(_stop_worker(worker, worker_task)))

        server = uvicorn.Server(
            uvicorn.Config(
                create_app(settings), host="127.0.0.1", port=port, log_config=None, lifespan="on"
            )
        )
        server_thread = threading.Thread(target=server.run, daemon=True)
        server_thread.start()
        cleanup.callback(server_thread.join, timeout=10)
        cleanup.callback(setattr, server, "should_exit", True)
        wait_until(lambda: server.started, timeout=STARTUP_TIMEOUT_SECONDS, what="the API")

        yield JobStack(url=f"http://127.0.0.1:{port}", settings=settings, engine=engine)


async def _start_worker(client, settings: Settings, engine: Engine):
    fast = FakeProvider(
        "fast",
        price_per_hour_micros=FAST_PRICE_PER_HOUR_MICROS,
        gpu_types=["T4"],
        start_seconds=0,
        run_seconds=1,
    )
    slow = FakeProvider(
        "slow",
        price_per_hour_micros=FAST_PRICE_PER_HOUR_MICROS,
        gpu_types=["A100"],
        start_seconds=3600,
        run_seconds=60,
    )
    local = LocalProvider(
        work_root=settings.data_dir / "jobs",
        price_per_hour_micros=LOCAL_PRICE_PER_HOUR_MICROS,
        terminate_grace_seconds=1,
        store=build_object_store(settings),
    )
    activities = JobActivities(
        providers={provider.name: provider for provider in (fast, slow, local)},
        ledger_engine=engine,
        poll_interval_seconds=1,
    )
    worker = build_worker(client, settings, activities)
    return worker, asyncio.create_task(worker.run())


async def _stop_worker(worker, task: asyncio.Task) -> None:
    await worker.shutdown()
    await task

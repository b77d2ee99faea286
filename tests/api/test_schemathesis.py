"""The API against its own OpenAPI schema, with requests that schemathesis generates from it.

Each operation gets valid requests and invalid ones (wrong types, missing fields, values out
of range), sent in-process through ASGI with a token that grants every scope. The app runs
with a real Temporal client, a worker on the `fake` provider and the PostgreSQL ledger, so
requests reach the route handlers. Temporal is a dev server, because `GET /v1/jobs` lists
workflows, which the time-skipping test server cannot. No response may be a 5xx, and each
must conform to the schema: a documented status code, content type and body.

Temporal's client and worker, and the app, run on an event loop in a thread of their own,
because Hypothesis drives the test synchronously.
"""

import asyncio
import threading
import uuid
from collections import Counter
from collections.abc import Coroutine, Iterator
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    content_type_conformance,
    missing_required_header,
    negative_data_rejection,
    not_a_server_error,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.generation import GenerationMode

import ledger
from activities.jobs import JobActivities
from api.app import create_app
from api.auth import BILLING_ADMIN, BILLING_READ, JOBS_READ, JOBS_WRITE, mint_token
from config import Settings
from providers.fake import FakeProvider
from tests.api.conftest import SECRET, asgi_client
from tests.conftest import start_dev_server_env
from worker.main import build_worker

MAX_EXAMPLES = 30
"""Requests per operation and generation mode."""

BASE_URL = "http://api.test"
TENANT = f"tenant-{uuid.uuid4().hex[:12]}"
TOKEN = mint_token(
    SECRET, subject=TENANT, scopes=[JOBS_READ, JOBS_WRITE, BILLING_READ, BILLING_ADMIN]
)

# Statuses that an app returns before a route handler runs.
NOT_REACHED = {401, 413, 422}

# Not `positive_data_acceptance`, because the schema cannot state every rule that the API
# checks, such as a maxBudget string above zero or a gpuCount of at least 1 with a gpuType. A
# request that the schema allows may still get a correct 422.
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
    negative_data_rejection,
    missing_required_header,
]

T = TypeVar("T")


class BackgroundLoop:
    """An asyncio event loop running in a daemon thread."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        """Run `coroutine` on the loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()
        self.loop.close()


class ServedApi:
    """The app with Temporal, a worker and the ledger, and a client of it, on a background loop."""

    def __init__(self, settings: Settings, loop: BackgroundLoop) -> None:
        self.settings = settings
        self.app = create_app(settings, temporal_client=None)
        self._loop = loop
        self._stack = AsyncExitStack()
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        env = await start_dev_server_env()
        self._stack.push_async_callback(env.shutdown)

        engine = ledger.create_ledger_engine(self.settings.database_url)
        self._stack.callback(engine.dispose)
        ledger.grant(engine, tenant_id=TENANT, amount_micros=10**12, key="schemathesis")

        provider = FakeProvider(
            price_per_hour_micros=2_500_000, gpu_types=["A100"], start_seconds=0, run_seconds=600
        )
        activities = JobActivities(
            providers={provider.name: provider}, ledger_engine=engine, poll_interval_seconds=60
        )
        await self._stack.enter_async_context(build_worker(env.client, self.settings, activities))

        self.app.state.temporal_client = env.client
        await self._stack.enter_async_context(self.app.router.lifespan_context(self.app))
        self._http = await self._stack.enter_async_context(asgi_client(self.app))

    def send(self, transport_kwargs: dict[str, Any]) -> httpx.Response:
        """Send a request given as schemathesis's `requests` keyword arguments."""
        return self._loop.run(self._send(dict(transport_kwargs)))

    async def _send(self, kwargs: dict[str, Any]) -> httpx.Response:
        assert self._http is not None
        headers = dict(kwargs.get("headers") or {})
        cookies = kwargs.get("cookies") or {}
        if cookies:
            headers["Cookie"] = "; ".join(f"{name}={value}" for name, value in cookies.items())
        options: dict[str, Any] = {"headers": headers, "params": kwargs.get("params") or {}}
        if "json" in kwargs:
            options["json"] = kwargs["json"]
        elif kwargs.get("data") is not None:
            options["content"] = kwargs["data"]
        response = await self._http.request(kwargs["method"], kwargs["url"], **options)
        await response.aread()
        return response

    async def stop(self) -> None:
        await self._stack.aclose()


@pytest.fixture(scope="module")
def served_api(billing_pg_url, tmp_path_factory) -> Iterator[ServedApi]:
    settings = Settings(
        jwt_secret=SECRET,
        data_dir=tmp_path_factory.mktemp("schemathesis"),
        task_queue=f"schemathesis-{uuid.uuid4().hex}",
        providers=["fake"],
        DATABASE_URL=billing_pg_url,
    )
    loop = BackgroundLoop()
    served = ServedApi(settings, loop)
    loop.run(served.start())
    yield served
    loop.run(served.stop())
    loop.close()


def load_schema(app) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_dict(app.openapi())


def operation_cases() -> list[tuple[str, GenerationMode]]:
    """Return each operation with positive mode, and with negative mode if it takes input."""
    # Building the app does no I/O, so the data directory need not exist.
    app = create_app(Settings(jwt_secret=SECRET, data_dir=Path("/nonexistent/cac")))
    cases = []
    for path, path_item in app.openapi()["paths"].items():
        for method, operation in path_item.items():
            label = f"{method.upper()} {path}"
            cases.append((label, GenerationMode.POSITIVE))
            # The bearer token is a security scheme, not a parameter, so schemathesis leaves it
            # alone and has nothing to make invalid in an operation without parameters.
            if operation.get("parameters") or operation.get("requestBody"):
                cases.append((label, GenerationMode.NEGATIVE))
    return cases


@pytest.mark.parametrize(
    ("label", "mode"), operation_cases(), ids=lambda value: str(value).replace(" ", "_")
)
def test_operation_conforms_to_schema(served_api, label, mode):
    operation = load_schema(served_api.app).find_operation_by_label(label)
    statuses: Counter[int] = Counter()
    details: set[str] = set()

    # derandomize: the same requests on every run, so that a failure reproduces and CI does
    # not pass or fail by chance.
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(mode, headers={"Authorization": f"Bearer {TOKEN}"}))
    def check(case):
        transport_kwargs = case.as_transport_kwargs(base_url=BASE_URL)
        response = served_api.send(transport_kwargs)
        statuses[response.status_code] += 1
        if response.status_code in NOT_REACHED:
            details.add(response.json().get("detail", ""))
        case.validate_response(response, checks=CHECKS, transport_kwargs=transport_kwargs)

    check()

    reached = sum(count for status, count in statuses.items() if status not in NOT_REACHED)
    if mode == GenerationMode.POSITIVE:
        assert reached > 0, (
            f"no request reached the handler of {label}, so its request schema admits values"
            f" that the API rejects; state those rules in the schema (pattern, format,"
            f" minimum). Statuses: {dict(statuses)}, reasons: {sorted(details)}"
        )

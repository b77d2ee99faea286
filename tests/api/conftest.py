"""Fixtures for the API tests: settings, tokens, and apps with stand-in or real Temporal clients."""

import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy.engine import Engine

import ledger
from api.app import create_app
from api.auth import mint_token
from config import Settings
from tests.conftest import fresh_pg_database

SECRET = "api-test-secret-long-enough-for-hs256-and-for-the-hs512-mismatch-test"


def bearer(subject: str, *scopes: str) -> dict[str, str]:
    """Authorization header with a valid token for `subject` granting `scopes`."""
    return {"Authorization": f"Bearer {mint_token(SECRET, subject=subject, scopes=list(scopes))}"}


class UnusedTemporalClient:
    """Temporal client stand-in for requests that the API must reject before calling Temporal."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the API called Temporal ({name}) for a request it should reject")


class RecordingTemporalClient:
    """Records `start_workflow` calls instead of starting workflows."""

    def __init__(self) -> None:
        self.started: list[dict[str, Any]] = []

    async def start_workflow(self, workflow: Any, arg: Any, **options: Any) -> None:
        self.started.append({"workflow": workflow, "arg": arg, **options})


@pytest.fixture
def settings(tmp_path) -> Settings:
    """Production-mode settings with a test secret, a private data dir and task queue."""
    return Settings(
        jwt_secret=SECRET,
        data_dir=tmp_path,
        task_queue=f"api-{uuid.uuid4().hex}",
    )


def asgi_client(app) -> httpx.AsyncClient:
    """HTTP client that calls the app in-process; the app's lifespan does not run."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api.test")


@pytest.fixture
async def api_client(settings) -> AsyncIterator[httpx.AsyncClient]:
    """Client of an app whose Temporal client fails the test if it is used."""
    async with asgi_client(create_app(settings, temporal_client=UnusedTemporalClient())) as client:
        yield client


@pytest.fixture
def recorder() -> RecordingTemporalClient:
    return RecordingTemporalClient()


@pytest.fixture
async def recording_client(settings, recorder) -> AsyncIterator[httpx.AsyncClient]:
    """Client of an app whose Temporal client records workflow starts."""
    async with asgi_client(create_app(settings, temporal_client=recorder)) as client:
        yield client


@pytest.fixture(scope="session")
def billing_pg_url() -> Iterator[str]:
    """A PostgreSQL ledger of the billing tests' own, so that their expiries touch no other
    package's tenants."""
    with fresh_pg_database() as url:
        ledger.upgrade(url)
        yield url


@pytest.fixture(scope="session")
def billing_engine(billing_pg_url) -> Iterator[Engine]:
    engine = ledger.create_ledger_engine(billing_pg_url)
    yield engine
    engine.dispose()


@pytest.fixture(scope="module")
async def billing_client(billing_pg_url, tmp_path_factory) -> AsyncIterator[httpx.AsyncClient]:
    """Client of an app that started up on the billing ledger; Temporal fails if used."""
    settings = Settings(
        jwt_secret=SECRET,
        data_dir=tmp_path_factory.mktemp("billing"),
        DATABASE_URL=billing_pg_url,
    )
    app = create_app(settings, temporal_client=UnusedTemporalClient())
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        yield client


def new_tenant() -> str:
    """Return a tenant id that no other test uses."""
    return f"tenant-{uuid.uuid4().hex[:12]}"

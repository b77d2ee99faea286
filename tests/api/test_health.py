"""`/healthz` and `/readyz` against a real Temporal test server and PostgreSQL, and with each
of them down or not responding."""

import socket
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import httpx
import pytest
from temporalio.client import Client

from api.app import create_app
from api.routes import health
from config import Settings
from tests.api.conftest import SECRET, asgi_client
from tests.support.processes import free_port

READY = {
    "status": "ready",
    "down": [],
    "checks": {
        "temporal": {"status": "ok", "reason": None},
        "ledger": {"status": "ok", "reason": None},
    },
}


@pytest.fixture
def closed_port() -> int:
    """A port on 127.0.0.1 with nothing listening: connections to it are refused."""
    return free_port()


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port whose listener completes TCP handshakes but never reads or responds."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


def postgres_url(port: int) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:{port}/test"


async def lazy_client(port: int) -> Client:
    """A client that first connects on its first call, as one whose server went away does."""
    return await Client.connect(f"127.0.0.1:{port}", lazy=True)


@asynccontextmanager
async def started_app(
    tmp_path, database_url: str, temporal_client: Client
) -> AsyncIterator[httpx.AsyncClient]:
    """Client of an app whose lifespan ran, so that it has a ledger engine for `database_url`."""
    settings = Settings(jwt_secret=SECRET, data_dir=tmp_path, DATABASE_URL=database_url)
    app = create_app(settings, temporal_client=temporal_client)
    async with app.router.lifespan_context(app), asgi_client(app) as client:
        yield client


async def test_healthz_returns_ok_without_token_or_dependencies(settings):
    async with asgi_client(create_app(settings)) as client:
        response = await client.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_with_temporal_and_postgres_up_returns_200(tmp_path, time_env, pg_url):
    async with started_app(tmp_path, pg_url, time_env.client) as client:
        response = await client.get("/readyz")

    assert response.status_code == 200
    assert response.json() == READY


async def test_readyz_with_temporal_down_names_temporal(tmp_path, pg_url, closed_port):
    async with started_app(tmp_path, pg_url, await lazy_client(closed_port)) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "down": ["temporal"],
        "checks": {
            "temporal": {"status": "down", "reason": "failed: RuntimeError"},
            "ledger": {"status": "ok", "reason": None},
        },
    }


async def test_readyz_with_postgres_down_names_ledger(tmp_path, time_env, closed_port):
    async with started_app(tmp_path, postgres_url(closed_port), time_env.client) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "down": ["ledger"],
        "checks": {
            "temporal": {"status": "ok", "reason": None},
            "ledger": {"status": "down", "reason": "failed: OperationalError"},
        },
    }


async def test_readyz_with_both_down_names_both(tmp_path, closed_port):
    database_url = postgres_url(closed_port)
    async with started_app(tmp_path, database_url, await lazy_client(closed_port)) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json()["status"] == "unavailable"
    assert response.json()["down"] == ["temporal", "ledger"]


async def test_readyz_with_silent_dependencies_times_out(tmp_path, silent_port, monkeypatch):
    monkeypatch.setattr(health, "CHECK_TIMEOUT_SECONDS", 0.5)
    database_url = postgres_url(silent_port)

    async with started_app(tmp_path, database_url, await lazy_client(silent_port)) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "down": ["temporal", "ledger"],
        "checks": {
            "temporal": {"status": "down", "reason": "timed out after 0.5 s"},
            "ledger": {"status": "down", "reason": "timed out after 0.5 s"},
        },
    }


async def test_readyz_before_startup_reports_not_connected(settings):
    async with asgi_client(create_app(settings)) as client:
        response = await client.get("/readyz")

    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "down": ["temporal", "ledger"],
        "checks": {
            "temporal": {"status": "down", "reason": "not connected"},
            "ledger": {"status": "down", "reason": "not connected"},
        },
    }

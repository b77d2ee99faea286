"""Start and stop the real processes that end-to-end tests run against."""

import os
import signal
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from workflows.search_attributes import JOB_SEARCH_ATTRIBUTES

TEMPORAL = os.path.join(sysconfig.get_path("scripts"), "temporal")


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_until(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Call `check` until it returns True; raise TimeoutError naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except (OSError, httpx.TransportError):
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{what} was not ready after {timeout} s")


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def start_temporal_dev_server(data_dir: Path, port: int, log: Path) -> subprocess.Popen:
    """Start `temporal server start-dev` with its history in a file, without the Web UI, and
    with the job search attributes registered."""
    search_attributes = []
    for key in JOB_SEARCH_ATTRIBUTES:
        search_attributes += ["--search-attribute", f"{key.name}={key.indexed_value_type.name}"]
    process = subprocess.Popen(
        [
            TEMPORAL, "server", "start-dev",
            "--headless",
            "--ip", "127.0.0.1",
            "--port", str(port),
            "--db-filename", str(data_dir / "temporal.db"),
            "--log-level", "warn",
            *search_attributes,
        ],
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    wait_until(lambda: port_open(port), 30, "the Temporal dev server")
    return process


def start_cac(command: str, env: dict[str, str], log: Path) -> subprocess.Popen:
    """Start `cac COMMAND` (worker or api) as a child process with `env` added."""
    return subprocess.Popen(
        [sys.executable, "-m", "cli.main", command],
        env={**os.environ, **env},
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def stop(process: subprocess.Popen, timeout: float = 10) -> None:
    """Stop a child process with SIGTERM, then SIGKILL if it does not exit in time."""
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()

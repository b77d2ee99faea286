"""Child processes of `cac dev`: start them, watch them, and stop them all cleanly."""

import errno
import logging
import os
import signal
import socket
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Self

logger = logging.getLogger(__name__)

STOP_TIMEOUT_SECONDS = 15.0
"""Seconds a child gets to exit after SIGTERM before it is killed with SIGKILL."""


class ChildExited(Exception):
    """A child process exited while `cac dev` still needed it."""


@dataclass
class Child:
    """A started child process and the file its output goes to."""

    name: str
    """Short name for messages, such as "worker"."""

    process: subprocess.Popen
    log_path: Path

    def check_alive(self) -> None:
        """Raise ChildExited, with the end of the child's log, if the child has exited."""
        code = self.process.poll()
        if code is None:
            return
        raise ChildExited(
            f"the {self.name} exited with code {code}; the end of {self.log_path}:\n"
            f"{tail(self.log_path)}"
        )


class ChildProcesses:
    """Child processes, each in its own process group, stopped in reverse start order.

    Each child gets its own process group so that Ctrl-C in the terminal reaches only
    `cac dev`, which then stops the children in order: the API and the worker before the
    Temporal server they depend on.
    """

    def __init__(self, stop_timeout: float = STOP_TIMEOUT_SECONDS) -> None:
        self.children: list[Child] = []
        self._stop_timeout = stop_timeout

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop_all()

    def start(
        self, name: str, args: Sequence[str], *, log_path: Path, env: dict[str, str] | None = None
    ) -> Child:
        """Start `args` as a child with stdout and stderr appended to `log_path`."""
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            process = subprocess.Popen(
                list(args),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )
        child = Child(name=name, process=process, log_path=log_path)
        self.children.append(child)
        logger.info("started the %s (pid %d), output in %s", name, process.pid, log_path)
        return child

    def check_alive(self) -> None:
        """Raise ChildExited if any child has exited."""
        for child in self.children:
            child.check_alive()

    def stop_all(self) -> None:
        """Stop every child that still runs, the last started first.

        A second Ctrl-C while this waits kills the remaining children at once.
        """
        remaining = list(reversed(self.children))
        try:
            while remaining:
                stop_process(remaining[0].process, remaining[0].name, self._stop_timeout)
                remaining.pop(0)
        except KeyboardInterrupt:
            for child in remaining:
                _signal_group(child.process, signal.SIGKILL)
                child.process.wait()
            raise


def stop_process(process: subprocess.Popen, name: str, timeout: float) -> None:
    """Send SIGTERM to the process's group, wait up to `timeout` s, then send SIGKILL."""
    if process.poll() is not None:
        return

    _signal_group(process, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        logger.warning("the %s did not exit %s s after SIGTERM; killing it", name, timeout)
        _signal_group(process, signal.SIGKILL)
        process.wait()
    logger.info("stopped the %s (exit code %s)", name, process.returncode)


def _signal_group(process: subprocess.Popen, signal_number: signal.Signals) -> None:
    # The child leads its own group (start_new_session), so its pid is the group id, and the
    # signal also reaches any process the child started.
    try:
        os.killpg(process.pid, signal_number)
    except ProcessLookupError:
        pass


def port_in_use(host: str, port: int) -> bool:
    """Return whether a server could not bind `host`:`port` now.

    SO_REUSEADDR is set as servers set it, so that a port that only has connections in
    TIME_WAIT counts as free.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as error:
            if error.errno == errno.EADDRINUSE:
                return True
            raise
    return False


def tail(path: Path, lines: int = 20) -> str:
    """Return the last `lines` lines of a text file, or a note if it cannot be read."""
    try:
        text = path.read_text(errors="replace")
    except OSError as error:
        return f"(cannot read {path}: {error})"
    return "\n".join(text.splitlines()[-lines:])

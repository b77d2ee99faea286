"""Child-process handling of `cac dev`."""

import signal
import socket
import sys
import time

import pytest

from cli.processes import ChildExited, ChildProcesses, port_in_use, stop_process

SLEEPER = [sys.executable, "-c", "import time; time.sleep(60)"]
# Ignores SIGTERM and prints "ready" once the handler is in place, so the test does not race it.
STUBBORN = [
    sys.executable,
    "-c",
    (
        "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN);"
        " print('ready', flush=True); time.sleep(60)"
    ),
]


def wait_for_line(path, text: str) -> None:
    for _ in range(200):
        if text in path.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} never appeared in {path}")


def test_stop_ends_child_with_sigterm(tmp_path):
    with ChildProcesses() as children:
        child = children.start("sleeper", SLEEPER, log_path=tmp_path / "sleeper.log")

    assert child.process.returncode == -signal.SIGTERM


def test_stop_kills_child_that_ignores_sigterm(tmp_path):
    children = ChildProcesses(stop_timeout=0.5)
    child = children.start("stubborn", STUBBORN, log_path=tmp_path / "stubborn.log")
    wait_for_line(child.log_path, "ready")

    children.stop_all()

    assert child.process.returncode == -signal.SIGKILL


def test_stop_all_stops_children_in_reverse_order(tmp_path, monkeypatch):
    children = ChildProcesses()
    first = children.start("first", SLEEPER, log_path=tmp_path / "first.log")
    second = children.start("second", SLEEPER, log_path=tmp_path / "second.log")
    stopped = []
    original = stop_process

    def recording_stop(process, name, timeout):
        stopped.append(name)
        original(process, name, timeout)

    monkeypatch.setattr("cli.processes.stop_process", recording_stop)
    children.stop_all()

    assert stopped == ["second", "first"]
    assert first.process.returncode == -signal.SIGTERM
    assert second.process.returncode == -signal.SIGTERM


def test_check_alive_reports_exit_code_and_log_tail(tmp_path):
    failing = [sys.executable, "-c", "import sys; print('boom: bad config'); sys.exit(3)"]
    with ChildProcesses() as children:
        child = children.start("worker", failing, log_path=tmp_path / "worker.log")
        child.process.wait()

        with pytest.raises(ChildExited) as raised:
            children.check_alive()

    assert str(raised.value) == (
        f"the worker exited with code 3; the end of {tmp_path / 'worker.log'}:\nboom: bad config"
    )


def test_port_in_use_detects_listener():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        assert port_in_use("127.0.0.1", port) is True

    assert port_in_use("127.0.0.1", port) is False

"""`cac dev`: job files, port checks, and the whole system started and stopped for real."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path

import pytest

from cli.dev import DevError, load_job_file
from cli.main import main
from cli.processes import port_in_use
from tests.support.processes import free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def test_load_job_file_reads_budget_as_decimal(tmp_path):
    path = tmp_path / "job.json"
    path.write_text('{"agentSpec": {"image": "a", "cmd": ["true"]}, "maxBudget": 0.1234565}')

    spec = load_job_file(path)

    assert spec["maxBudget"] == Decimal("0.1234565")
    assert spec["agentSpec"] == {"image": "a", "cmd": ["true"]}


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{", "is not valid JSON"),
        ("[]", "must hold a JSON object"),
        ('{"agentSpec": {}}', "lacks maxBudget"),
        ('{"maxBudget": "1"}', "lacks agentSpec"),
        ('{"agentSpec": {}, "maxBudget": true}', "maxBudget in .* must be a number"),
    ],
)
def test_load_job_file_rejects_invalid_file(tmp_path, content, message):
    path = tmp_path / "job.json"
    path.write_text(content)

    with pytest.raises(DevError, match=message):
        load_job_file(path)


def test_load_job_file_reports_missing_file(tmp_path):
    with pytest.raises(DevError, match="cannot read the job file .*No such file or directory"):
        load_job_file(tmp_path / "missing.json")


def test_dev_fails_on_busy_port(tmp_path, monkeypatch, capsys):
    # Set through monkeypatch so that the variables that `cac dev` sets are restored afterwards.
    monkeypatch.setenv("CAC_DEV_MODE", "false")
    monkeypatch.setenv("CAC_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("CAC_TEMPORAL_ADDRESS", "127.0.0.1:7233")
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        api_port = listener.getsockname()[1]
        monkeypatch.setenv("CAC_API_PORT", str(api_port))

        code = main(["dev", "--data-dir", str(tmp_path), "--temporal-port", str(free_port())])

    assert code == 1
    error = capsys.readouterr().err
    assert f"127.0.0.1:{api_port} (API)" in error
    assert error.startswith("error: already in use: ")
    assert not (tmp_path / "temporal.db").exists()


def dev_environment(api_port: int) -> dict[str, str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith("CAC_") and key != "DATABASE_URL"
    }
    env.update(
        {
            "CAC_API_PORT": str(api_port),
            "CAC_PROVIDERS": "local",
            "CAC_POLL_INTERVAL_SECONDS": "1",
            "PYTHONPATH": str(PROJECT_ROOT),
        }
    )
    return env


def dev_command(data_dir: Path, temporal_port: int, ui_port: int, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "cli.main",
        "dev",
        "--data-dir",
        str(data_dir),
        "--temporal-port",
        str(temporal_port),
        "--ui-port",
        str(ui_port),
        *extra,
    ]


def test_dev_run_reports_success(tmp_path):
    ports = [free_port(), free_port(), free_port()]
    temporal_port, ui_port, api_port = ports
    job_file = tmp_path / "job.json"
    job_file.write_text(
        json.dumps(
            {
                "agentSpec": {
                    "image": "python:3.11-slim",
                    "cmd": [sys.executable, "-c", "print(6 * 7)"],
                },
                "resourceHint": {"gpuType": None, "gpuCount": 0, "spotOk": False},
                "maxBudget": "0.5",
            }
        )
    )

    result = subprocess.run(
        dev_command(tmp_path / "data", temporal_port, ui_port, "--run", str(job_file)),
        env=dev_environment(api_port),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert f"API docs:  http://127.0.0.1:{api_port}/docs" in result.stdout
    assert f"Web UI:    http://127.0.0.1:{ui_port}" in result.stdout
    statuses = re.findall(r"^  ([A-Z]{4,})\b(?!:)", result.stdout, re.MULTILINE)
    assert statuses == ["SUBMITTED", "QUEUED", "PROVISIONING", "RUNNING", "SUCCEEDED"]
    assert re.search(r"^  SUCCEEDED on local .*, exit code 0$", result.stdout, re.MULTILINE)
    balance = re.search(
        r"^balance of dev: available (\S+), held (\S+), spent (\S+) credits$",
        result.stdout,
        re.MULTILINE,
    )
    assert balance is not None, result.stdout
    available, held, spent = (Decimal(value) for value in balance.groups())
    assert held == 0
    assert available + spent == 100
    assert spent > 0
    for port in ports:
        assert not port_in_use("127.0.0.1", port)


def test_dev_run_with_failing_worker_submits_nothing(tmp_path):
    temporal_port, ui_port, api_port = free_port(), free_port(), free_port()
    job_file = tmp_path / "job.json"
    job_file.write_text(
        json.dumps({"agentSpec": {"image": "x", "cmd": ["true"]}, "maxBudget": "1"})
    )

    result = subprocess.run(
        dev_command(tmp_path / "data", temporal_port, ui_port, "--run", str(job_file)),
        env={**dev_environment(api_port), "CAC_PROVIDERS": "bogus"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )

    assert result.returncode == 1
    assert "error: the worker exited with code 1" in result.stderr
    assert "unknown provider 'bogus' in CAC_PROVIDERS" in result.stderr
    assert "submitted job" not in result.stdout
    for port in (temporal_port, ui_port, api_port):
        assert not port_in_use("127.0.0.1", port)


def test_dev_stops_children_on_sigterm(tmp_path):
    ports = [free_port(), free_port(), free_port()]
    temporal_port, ui_port, api_port = ports
    output = tmp_path / "dev.out"

    with output.open("w") as sink:
        process = subprocess.Popen(
            dev_command(tmp_path / "data", temporal_port, ui_port),
            env=dev_environment(api_port),
            cwd=tmp_path,
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 90
        while "Press Ctrl-C to stop." not in output.read_text():
            assert process.poll() is None, output.read_text()
            assert time.monotonic() < deadline, output.read_text()
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()

    log = output.read_text()
    assert code == 0, log
    assert "stopped the API" in log
    assert "stopped the worker" in log
    assert "stopped the Temporal dev server (exit code 0)" in log
    assert log.rstrip().endswith("stopped")
    for port in ports:
        assert not port_in_use("127.0.0.1", port)

"""LocalProvider against real processes on this machine."""

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from providers.base import (
    FINAL_INSTANCE_STATES,
    InstanceNotFound,
    InstanceState,
    InstanceStatus,
    ManagedInstance,
    Offer,
    PermanentProviderError,
    ProvisionRequest,
    QuoteRequest,
)
from providers.local import LocalProvider

PRICE_PER_HOUR_MICROS = 360_000


@pytest.fixture
def provider(tmp_path: Path) -> LocalProvider:
    return LocalProvider(
        work_root=tmp_path / "jobs",
        price_per_hour_micros=PRICE_PER_HOUR_MICROS,
        terminate_grace_seconds=2.0,
    )


def _offer() -> Offer:
    return Offer(
        provider="local",
        instance_type="local-process",
        region="local",
        gpu_type=None,
        gpu_count=0,
        spot=False,
        price_per_hour_micros=PRICE_PER_HOUR_MICROS,
        start_seconds=1,
    )


def _request(token: str, command: list[str], env: dict[str, str] | None = None) -> ProvisionRequest:
    return ProvisionRequest(
        client_token=token,
        job_id=f"job-{token}",
        offer=_offer(),
        image="python:3.11-slim",
        command=command,
        env=env or {},
    )


def _python(code: str) -> list[str]:
    return [sys.executable, "-c", code]


async def _wait_for_final(provider: LocalProvider, instance_id: str) -> InstanceStatus:
    deadline = time.monotonic() + 10
    while True:
        status = await provider.status(instance_id, now=0)
        if status.state in FINAL_INSTANCE_STATES:
            return status
        assert time.monotonic() < deadline, f"instance still {status.state} after 10 s"
        await asyncio.sleep(0.05)


async def _wait_for_log(provider: LocalProvider, instance_id: str, text: str) -> None:
    deadline = time.monotonic() + 10
    log_path = provider.log_path(instance_id)
    while not (log_path.exists() and text in log_path.read_text()):
        assert time.monotonic() < deadline, f"{text!r} not in the log after 10 s"
        await asyncio.sleep(0.05)


def _process_group_exists(process_group: int) -> bool:
    try:
        os.killpg(process_group, 0)
    except ProcessLookupError:
        return False
    return True


async def test_quote_cpu_request_returns_local_offer(provider: LocalProvider):
    offers = await provider.quote(QuoteRequest())

    assert offers == [_offer()]


async def test_quote_cpu_gpu_type_returns_local_offer(provider: LocalProvider):
    offers = await provider.quote(QuoteRequest(gpu_type="cpu", gpu_count=1))

    assert len(offers) == 1


async def test_quote_gpu_request_returns_no_offer(provider: LocalProvider):
    offers = await provider.quote(QuoteRequest(gpu_type="A100", gpu_count=1))

    assert offers == []


async def test_command_succeeds_with_output_file_and_log(provider: LocalProvider):
    code = (
        "import os, pathlib\n"
        "out = pathlib.Path(os.environ['CAC_OUTPUT_DIR'])\n"
        "(out / 'result.txt').write_text(os.environ['GREETING'] + ' from ' + os.environ['CAC_JOB_ID'])\n"
        "print('cwd', os.getcwd())\n"
        "print('input', os.environ['CAC_INPUT_DIR'])\n"
    )

    instance_id = await provider.provision(_request("ok-1", _python(code), env={"GREETING": "hello"}))
    status = await _wait_for_final(provider, instance_id)

    job_dir = provider.work_root / "ok-1"
    log = provider.log_path(instance_id).read_text()
    assert instance_id == "ok-1"
    assert status.state == InstanceState.SUCCEEDED
    assert status.exit_code == 0
    assert status.billable_seconds == 1
    assert (provider.output_dir(instance_id) / "result.txt").read_text() == "hello from job-ok-1"
    assert f"cwd {job_dir}\n" in log
    assert f"input {job_dir / 'input'}\n" in log


async def test_job_file_omits_env_values(provider: LocalProvider):
    command = _python("pass")

    instance_id = await provider.provision(_request("record-1", command, env={"TOKEN": "secret"}))
    await _wait_for_final(provider, instance_id)

    job = json.loads((provider.work_root / instance_id / "job.json").read_text())
    assert job["image"] == "python:3.11-slim"
    assert job["command"] == command
    assert job["job_id"] == "job-record-1"
    assert job["env_names"] == ["TOKEN"]
    assert "secret" not in json.dumps(job)


async def test_failing_command_reports_exit_code(provider: LocalProvider):
    instance_id = await provider.provision(_request("fail-1", _python("import sys; sys.exit(3)")))
    status = await _wait_for_final(provider, instance_id)

    assert status.state == InstanceState.FAILED
    assert status.exit_code == 3


async def test_missing_executable_fails_with_127(provider: LocalProvider):
    instance_id = await provider.provision(_request("missing-1", ["no-such-command-cac", "--flag"]))
    status = await _wait_for_final(provider, instance_id)

    assert status.state == InstanceState.FAILED
    assert status.exit_code == 127
    assert "command not found: 'no-such-command-cac'" in status.message
    assert "command not found: 'no-such-command-cac'" in provider.log_path(instance_id).read_text()


async def test_terminate_kills_running_command(provider: LocalProvider):
    instance_id = await provider.provision(_request("sleep-1", ["sleep", "60"]))
    while (await provider.status(instance_id, now=0)).state == InstanceState.PENDING:
        await asyncio.sleep(0.05)
    process_group = json.loads((provider.work_root / instance_id / "start.json").read_text())["pid"]

    started = time.monotonic()
    terminated = await provider.terminate(instance_id, now=0)
    elapsed = time.monotonic() - started
    status = await provider.status(instance_id, now=0)

    assert terminated.state == InstanceState.TERMINATED
    assert terminated.exit_code == 143
    assert terminated.message == "killed by signal SIGTERM"
    assert elapsed < 1.5
    assert status == terminated
    assert not _process_group_exists(process_group)


async def test_terminate_twice_returns_same_status(provider: LocalProvider):
    instance_id = await provider.provision(_request("sleep-2", ["sleep", "60"]))
    while (await provider.status(instance_id, now=0)).state == InstanceState.PENDING:
        await asyncio.sleep(0.05)

    first = await provider.terminate(instance_id, now=0)
    second = await provider.terminate(instance_id, now=0)

    assert first.state == InstanceState.TERMINATED
    assert second == first


async def test_terminate_sends_sigkill_when_sigterm_is_ignored(tmp_path: Path):
    provider = LocalProvider(
        work_root=tmp_path / "jobs",
        price_per_hour_micros=PRICE_PER_HOUR_MICROS,
        terminate_grace_seconds=0.3,
    )
    code = (
        "import signal, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    instance_id = await provider.provision(_request("stubborn-1", _python(code)))
    await _wait_for_log(provider, instance_id, "ready")

    terminated = await provider.terminate(instance_id, now=0)

    assert terminated.state == InstanceState.TERMINATED
    assert terminated.exit_code == 137
    assert terminated.message == "killed by signal SIGKILL after SIGTERM"


async def test_terminate_after_exit_keeps_final_state(provider: LocalProvider):
    instance_id = await provider.provision(_request("done-1", _python("pass")))
    finished = await _wait_for_final(provider, instance_id)

    terminated = await provider.terminate(instance_id, now=0)

    assert terminated.state == InstanceState.SUCCEEDED
    assert terminated == finished


async def test_provision_twice_starts_one_process(provider: LocalProvider):
    code = "import os; open(os.environ['CAC_OUTPUT_DIR'] + '/runs', 'a').write('run\\n')"
    request = _request("twice-1", _python(code))

    first, second = await asyncio.gather(provider.provision(request), provider.provision(request))
    third = await provider.provision(request)
    status = await _wait_for_final(provider, first)

    assert first == "twice-1"
    assert second == "twice-1"
    assert third == "twice-1"
    assert status.state == InstanceState.SUCCEEDED
    assert (provider.output_dir(first) / "runs").read_text() == "run\n"


async def test_new_provider_object_reads_status_and_terminates(provider: LocalProvider):
    finished_id = await provider.provision(_request("restart-1", _python("import sys; sys.exit(4)")))
    finished = await _wait_for_final(provider, finished_id)
    running_id = await provider.provision(_request("restart-2", ["sleep", "60"]))
    while (await provider.status(running_id, now=0)).state == InstanceState.PENDING:
        await asyncio.sleep(0.05)

    restarted = LocalProvider(work_root=provider.work_root, price_per_hour_micros=PRICE_PER_HOUR_MICROS)
    finished_again = await restarted.status(finished_id, now=0)
    running = await restarted.status(running_id, now=0)
    terminated = await restarted.terminate(running_id, now=0)

    assert finished_again == finished
    assert running.state == InstanceState.RUNNING
    assert terminated.state == InstanceState.TERMINATED


async def test_status_of_unknown_instance_raises(provider: LocalProvider):
    with pytest.raises(PermanentProviderError, match="local instance nope-1 not found"):
        await provider.status("nope-1", now=0)


async def test_terminate_of_unknown_instance_raises(provider: LocalProvider):
    with pytest.raises(PermanentProviderError, match="local instance nope-2 not found"):
        await provider.terminate("nope-2", now=0)


async def test_invalid_instance_id_raises(provider: LocalProvider):
    with pytest.raises(PermanentProviderError, match="invalid local instance id '../etc'"):
        await provider.status("../etc", now=0)


async def test_provision_empty_command_raises(provider: LocalProvider):
    with pytest.raises(PermanentProviderError, match="command of job job-empty-1 is empty"):
        await provider.provision(_request("empty-1", []))


async def test_provision_other_providers_offer_raises(provider: LocalProvider):
    request = _request("other-1", _python("pass"))
    request.offer.provider = "fake"

    with pytest.raises(PermanentProviderError, match="offer is for provider 'fake', not 'local'"):
        await provider.provision(request)


async def test_runner_that_never_started_fails(provider: LocalProvider):
    job_dir = provider.work_root / "stale-1"
    job_dir.mkdir(parents=True)
    (job_dir / "launch.lock").touch()
    an_hour_ago = time.time() - 3600
    os.utime(job_dir / "launch.lock", (an_hour_ago, an_hour_ago))

    status = await provider.status("stale-1", now=0)

    assert status.state == InstanceState.FAILED
    assert status.exit_code is None
    assert status.billable_seconds == 0
    assert status.message == "the runner did not start within 30 seconds"


async def test_runner_that_vanished_fails(provider: LocalProvider):
    # An exited process that nobody has waited for yet: a zombie, as an orphaned runner is
    # under an init that does not reap. kill(0) on its process group still succeeds.
    zombie = subprocess.Popen(["true"], start_new_session=True)
    stat_path = Path(f"/proc/{zombie.pid}/stat")
    while stat_path.read_text().rsplit(")", 1)[1].split()[0] != "Z":
        await asyncio.sleep(0.01)
    job_dir = provider.work_root / "vanished-1"
    job_dir.mkdir(parents=True)
    (job_dir / "launch.lock").touch()
    started_at = time.time() - 10.5
    (job_dir / "start.json").write_text(json.dumps({"pid": zombie.pid, "started_at": started_at}))

    try:
        status = await provider.status("vanished-1", now=0)
    finally:
        zombie.wait()

    assert status.state == InstanceState.FAILED
    assert status.exit_code is None
    assert status.billable_seconds == 11
    assert status.message == "the runner stopped without recording an exit code"


async def test_list_managed_instances_returns_running_jobs(provider: LocalProvider):
    running = await provider.provision(_request("sleeper", _python("import time; time.sleep(30)")))
    finished = await provider.provision(_request("quick", _python("pass")))
    await _wait_for_final(provider, finished)

    managed = await provider.list_managed_instances()
    await provider.terminate(running, now=0)
    after_terminate = await provider.list_managed_instances()

    assert managed == [ManagedInstance(instance_id="sleeper", job_id="job-sleeper", client_token="sleeper")]
    assert after_terminate == []


async def test_list_managed_instances_without_jobs_is_empty(provider: LocalProvider):
    assert await provider.list_managed_instances() == []


async def test_local_job_does_not_see_worker_secrets(tmp_path, monkeypatch):
    monkeypatch.setenv("CAC_JWT_SECRET", "a-secret-the-job-must-not-read")
    monkeypatch.setenv("DATABASE_URL", "postgresql://user:password@host/db")
    provider = LocalProvider(work_root=tmp_path, price_per_hour_micros=1_000_000)
    (offer,) = await provider.quote(QuoteRequest())
    request = ProvisionRequest(
        client_token="job-env-1",
        job_id="job-env",
        offer=offer,
        image="python:3.11",
        command=["sh", "-c", "env > \"$CAC_OUTPUT_DIR/env.txt\""],
        env={"MY_SETTING": "visible"},
    )

    instance_id = await provider.provision(request)
    for _ in range(200):
        if (await provider.status(instance_id, 0)).state in FINAL_INSTANCE_STATES:
            break
        await asyncio.sleep(0.05)
    seen = (provider.output_dir(instance_id) / "env.txt").read_text()

    assert "MY_SETTING=visible" in seen
    assert "CAC_JOB_ID=job-env" in seen
    assert "CAC_JWT_SECRET" not in seen
    assert "DATABASE_URL" not in seen
    assert "PATH=" in seen


async def test_logs_return_tail_of_output(provider: LocalProvider):
    command = [sys.executable, "-c", "print('first line'); print('x' * 10); print('last line')"]
    instance_id = await provider.provision(_request("job-logs-1", command))
    await _wait_for_final(provider, instance_id)

    everything = await provider.logs(instance_id, max_bytes=1024)
    tail = await provider.logs(instance_id, max_bytes=10)

    assert "first line\nxxxxxxxxxx\nlast line\n" in everything
    assert tail == "last line\n"


async def test_logs_of_unknown_instance_raise(provider: LocalProvider):
    with pytest.raises(InstanceNotFound):
        await provider.logs("job-nothing-1", max_bytes=100)


async def test_find_instance_by_client_token(provider: LocalProvider):
    instance_id = await provider.provision(_request("job-find-1", [sys.executable, "-c", "0"]))
    await _wait_for_final(provider, instance_id)

    assert await provider.find_instance("job-find-1") == instance_id
    assert await provider.find_instance("job-find-2") is None

"""`cac submit`, `status`, `list`, `wait`, `cancel` and `logs` against the running system of
`tests.support.job_stack`: a Temporal dev server, a worker with the `fast`, `slow` and `local`
providers, and the API under uvicorn on 127.0.0.1."""

import io
import json
import tarfile
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pytest

import sdk.client
from api.idempotency import derive_job_id
from cli.jobs import EXIT_JOB_UNSUCCESSFUL, ProgressLine
from cli.main import main
from sdk import ApiError, Client, Job
from tests.sdk.test_client import (
    T4_JOB,
    WAIT,
    WRITE_OUTPUT,
    cpu_job,
    list_until,
    poll_until_held,
)
from tests.support.job_stack import JobStack, running_job_stack

POLL = ("--poll-interval", "0.2")


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[JobStack]:
    with running_job_stack(tmp_path_factory.mktemp("cli-jobs")) as running:
        yield running


class Tenant:
    """A new tenant with 10 credits, its token and an SDK client to check what `cac` did."""

    def __init__(self, stack: JobStack, capsys) -> None:
        self.id = stack.new_tenant()
        self.token = stack.token(self.id)
        self.url = stack.url
        self.client = Client(stack.url, self.token)
        self._capsys = capsys

    def cac(self, *args: str) -> tuple[int, str, str]:
        """Run `cac` with the API's URL and the token; return exit status, stdout and stderr."""
        self._capsys.readouterr()
        code = main([*args, "--api-url", self.url, "--token", self.token])
        captured = self._capsys.readouterr()
        return code, captured.out, captured.err


@pytest.fixture
def tenant(stack, capsys) -> Iterator[Tenant]:
    tenant = Tenant(stack, capsys)
    yield tenant
    tenant.client.close()


def job_file(directory: Path, agent_spec: dict, resource_hint: dict, budget: object) -> Path:
    path = directory / "job.json"
    body = {"agentSpec": agent_spec, "resourceHint": resource_hint, "maxBudget": budget}
    path.write_text(json.dumps(body))
    return path


def job_lines(job: Job) -> list[str]:
    """The lines that `cac status` prints for a settled `fast` T4 job, up to the times."""
    return [
        f"job        {job.job_id}",
        "status     SUCCEEDED",
        "provider   fast (sim-t4-x1, 1xT4, sim-1, 3.600000 credits/hour)",
        "exit code  0",
        "cost       0.001000 credits",
        "budget     5.000000 credits",
        "ledger     held 0.000000, captured 0.001000, released 4.999000",
    ]


def test_submit_with_wait_prints_settled_job(tenant, tmp_path):
    path = job_file(tmp_path, T4_JOB, {"gpuType": "T4"}, 5)

    code, out, err = tenant.cac("submit", str(path), "--wait", *POLL)

    lines = out.splitlines()
    job_id = lines[0].removeprefix("submitted job ")
    job = tenant.client.get(job_id)
    assert code == 0
    assert lines[1:8] == job_lines(job)
    assert [line.split()[0] for line in lines[8:]] == ["submitted", "started", "finished"]
    progress = err.splitlines()
    assert all(line.startswith(f"job {job_id}: ") for line in progress)
    assert progress[-1] == f"job {job_id}: SUCCEEDED on fast, cost 0.001000 credits"
    assert len(progress) == len({line.split(":")[1].split()[0] for line in progress})


def test_submit_replays_with_same_key(tenant, tmp_path):
    path = job_file(tmp_path, T4_JOB, {"gpuType": "T4"}, "5")

    first = tenant.cac("submit", str(path), "--idempotency-key", "train-7")
    job_id = first[1].strip().removeprefix("submitted job ")
    tenant.client.wait(job_id, **WAIT)
    retry = tenant.cac("submit", str(path), "--idempotency-key", "train-7")

    assert first == (0, f"submitted job {job_id}\n", "")
    assert retry == (
        0,
        f"job {job_id} was already submitted with this idempotency key; it is SUCCEEDED\n",
        "",
    )


def test_submit_json_prints_api_response(tenant, tmp_path):
    path = job_file(tmp_path, T4_JOB, {"gpuType": "T4"}, "5")

    code, out, err = tenant.cac("submit", str(path), "--json")

    body = json.loads(out)
    tenant.client.wait(body["jobId"], **WAIT)
    assert code == 0
    assert err == ""
    assert body == {"jobId": body["jobId"], "status": "SUBMITTED"}


def test_submit_with_wait_json_prints_final_job_only(tenant, tmp_path):
    path = job_file(tmp_path, T4_JOB, {"gpuType": "T4"}, "5")

    code, out, _ = tenant.cac("submit", str(path), "--wait", "--json", *POLL)

    body = json.loads(out)
    assert code == 0
    assert body == tenant.client.get(body["jobId"]).raw
    assert body["status"] == "SUCCEEDED"
    assert body["held"] == "0.000000"


def test_submit_cpu_job_then_download_its_output(tenant, tmp_path):
    path = job_file(tmp_path, cpu_job(WRITE_OUTPUT), {}, "1")

    code, out, _ = tenant.cac("submit", str(path), "--wait", *POLL)
    job_id = out.splitlines()[0].removeprefix("submitted job ")
    archive = tenant.client.download_output(job_id, tmp_path / "output.tar.gz")

    assert code == 0
    assert "status     SUCCEEDED" in out.splitlines()
    with tarfile.open(archive) as contents:
        assert contents.getnames() == ["answer.txt"]
        assert contents.extractfile("answer.txt").read() == b"42"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            "{",
            (
                "the job file {path} is not valid JSON: Expecting property name enclosed in"
                " double quotes: line 1 column 2 (char 1)"
            ),
        ),
        ('{"agentSpec": {}}', "the job file {path} lacks maxBudget"),
        (
            '{"agentSpec": {}, "maxBudget": 1, "budget": 2}',
            (
                "the job file {path} has unknown fields budget; it may contain agentSpec,"
                " resourceHint, maxBudget, callbackUrl"
            ),
        ),
    ],
)
def test_submit_invalid_file_exits_usage(tenant, tmp_path, content, message):
    path = tmp_path / "job.json"
    path.write_text(content)

    code, out, err = tenant.cac("submit", str(path))

    assert code == 2
    assert out == ""
    assert err == f"error: {message.format(path=path)}\n"


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--timeout", "5"), "--timeout and --poll-interval apply only with --wait"),
        (("--wait", "--timeout", "-1"), "--timeout must be 0 or more seconds, got -1.0"),
        (
            ("--wait", "--poll-interval", "0"),
            "--poll-interval must be more than 0 seconds, got 0.0",
        ),
    ],
)
def test_submit_invalid_wait_options_exit_usage_before_submitting(
    tenant, tmp_path, options, message
):
    path = job_file(tmp_path, T4_JOB, {"gpuType": "T4"}, "5")

    code, out, err = tenant.cac("submit", str(path), "--idempotency-key", "k1", *options)

    assert code == 2
    assert out == ""
    assert err == f"error: {message}\n"
    with pytest.raises(ApiError) as raised:
        tenant.client.get(derive_job_id(tenant.id, "k1"))
    assert raised.value.status_code == 404


def test_submit_rejected_budget_exits_failed(tenant, tmp_path):
    path = job_file(tmp_path, T4_JOB, {"gpuType": "T4"}, "0")

    code, out, err = tenant.cac("submit", str(path))

    assert code == 1
    assert out == ""
    assert err == (
        "error: the API rejected the request (HTTP 422): maxBudget: must be greater than 0\n"
    )


def test_wait_for_failed_job_exits_unsuccessful(tenant):
    job_id = tenant.client.submit(T4_JOB, {"gpuType": "H100"}, "5").job_id

    code, out, _ = tenant.cac("wait", job_id, *POLL)

    job = tenant.client.get(job_id)
    assert code == EXIT_JOB_UNSUCCESSFUL
    assert job.status == "FAILED"
    assert out.splitlines()[:3] == [
        f"job        {job_id}",
        "status     FAILED",
        f"reason     {job.failure_reason}",
    ]


def test_wait_past_timeout_exits_failed(tenant):
    job_id = tenant.client.submit(T4_JOB, {"gpuType": "A100"}, "5").job_id
    poll_until_held(tenant.client, job_id)

    code, out, err = tenant.cac("wait", job_id, "--timeout", "0.3", "--poll-interval", "0.1")
    tenant.client.cancel(job_id)
    tenant.client.wait(job_id, **WAIT)

    assert code == 1
    assert out == ""
    assert err.splitlines() == [
        f"job {job_id}: PROVISIONING on slow, cost 0.000000 credits",
        (
            f"error: job {job_id} is still PROVISIONING after 0.3 s; run `cac wait {job_id}`"
            " again to keep waiting"
        ),
    ]


def test_cancel_then_wait_exits_unsuccessful(tenant):
    job_id = tenant.client.submit(T4_JOB, {"gpuType": "A100"}, "5").job_id
    poll_until_held(tenant.client, job_id)

    cancel = tenant.cac("cancel", job_id, "--reason", "wrong dataset")
    code, out, _ = tenant.cac("wait", job_id, *POLL)
    again = tenant.cac("cancel", job_id)

    accepted = [
        f"cancel requested for job {job_id}, which is {status}; `cac wait {job_id}` waits"
        " until it is CANCELLED and settled\n"
        for status in ("PROVISIONING", "CANCELLED")
    ]
    assert cancel[0] == 0
    assert cancel[1] in accepted
    assert code == EXIT_JOB_UNSUCCESSFUL
    assert out.splitlines()[1:3] == ["status     CANCELLED", "reason     wrong dataset"]
    assert again == (
        1,
        "",
        (
            "error: the API rejected the request (HTTP 409): job"
            f" {job_id} has already ended CANCELLED\n"
        ),
    )


def test_status_prints_job_and_json(tenant):
    job_id = tenant.client.submit(T4_JOB, {"gpuType": "T4"}, "5").job_id
    job = tenant.client.wait(job_id, **WAIT)

    text = tenant.cac("status", job_id)
    as_json = tenant.cac("status", job_id, "--json")

    assert text[0] == 0
    assert text[1].splitlines()[:7] == job_lines(job)
    assert as_json[0] == 0
    assert json.loads(as_json[1]) == job.raw


def test_status_of_unknown_job_exits_failed(tenant):
    code, out, err = tenant.cac("status", "job-does-not-exist")

    assert code == 1
    assert out == ""
    assert err == (
        "error: the API rejected the request (HTTP 404): job job-does-not-exist not found\n"
    )


def test_list_prints_jobs_and_filters_by_status(tenant):
    succeeded = tenant.client.submit(T4_JOB, {"gpuType": "T4"}, "5").job_id
    failed = tenant.client.submit(T4_JOB, {"gpuType": "H100"}, "5").job_id
    for job_id in (succeeded, failed):
        tenant.client.wait(job_id, **WAIT)
    expected = {succeeded: "SUCCEEDED", failed: "FAILED"}
    list_until(tenant.client, lambda page: {j.job_id: j.status for j in page.jobs} == expected)

    table = tenant.cac("list")
    only_failed = tenant.cac("list", "--status", "FAILED", "--json")
    either = tenant.cac("list", "--status", "FAILED", "--status", "SUCCEEDED", "--json")
    first_page = tenant.cac("list", "--limit", "1")
    every_page = tenant.cac("list", "--limit", "1", "--all")

    header, *rows = table[1].splitlines()
    assert table[0] == 0
    assert header.split() == [
        "JOB", "STATUS", "PROVIDER", "GPU", "COST", "SUBMITTED", "(UTC)", "CLOSED", "(UTC)"
    ]
    cells = {row.split()[0]: row.split()[1:5] for row in rows}
    assert cells == {
        succeeded: ["SUCCEEDED", "fast", "T4", "0.001000"],
        failed: ["FAILED", "-", "H100", "0.000000"],
    }
    assert [job["jobId"] for job in json.loads(only_failed[1])["jobs"]] == [failed]
    assert json.loads(only_failed[1])["nextCursor"] is None
    assert sorted(job["jobId"] for job in json.loads(either[1])["jobs"]) == sorted(expected)
    first_lines = first_page[1].splitlines()
    assert len(first_lines) == 4
    assert first_lines[2] == ""
    assert first_lines[3].startswith("More jobs: run again with --cursor ")
    assert first_lines[3].endswith(", or with --all.")
    assert sorted(line.split()[0] for line in every_page[1].splitlines()[1:]) == sorted(expected)


def test_list_unknown_status_exits_usage(tenant, capsys):
    with pytest.raises(SystemExit) as raised:
        main(["list", "--status", "DONE"])

    assert raised.value.code == 2
    assert "argument --status: invalid choice: 'DONE'" in capsys.readouterr().err


def test_logs_print_command_output(tenant):
    job_id = tenant.client.submit(cpu_job(WRITE_OUTPUT), {}, "1").job_id
    job = tenant.client.wait(job_id, **WAIT)
    header = f"==> attempt 1: local/{job.segments[0].instance_id} <=="

    text = tenant.cac("logs", job_id)
    tail = tenant.cac("logs", job_id, "--max-bytes", "3", "--json")

    assert text == (0, f"{header}\nthe answer is 42\n", "")
    assert json.loads(tail[1]) == {"jobId": job_id, "logs": f"{header}\n42\n"}


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def progress_job(status: str, cost: str) -> Job:
    return Job.from_json({"jobId": "job-1", "status": status, "provider": "fast", "cost": cost})


def test_progress_line_rewrites_itself_on_terminal():
    terminal = Terminal()

    with ProgressLine(terminal) as progress:
        progress.update(progress_job("RUNNING", "0.001000"))
        progress.update(progress_job("RUNNING", "0.002000"))

    assert terminal.getvalue() == (
        "\r\x1b[Kjob job-1: RUNNING on fast, cost 0.001000 credits"
        "\r\x1b[Kjob job-1: RUNNING on fast, cost 0.002000 credits\n"
    )


def test_progress_line_writes_status_changes_elsewhere():
    log = io.StringIO()

    with ProgressLine(log) as progress:
        progress.update(progress_job("RUNNING", "0.001000"))
        progress.update(progress_job("RUNNING", "0.002000"))
        progress.update(progress_job("SUCCEEDED", "0.003000"))

    assert log.getvalue() == (
        "job job-1: RUNNING on fast, cost 0.001000 credits\n"
        "job job-1: SUCCEEDED on fast, cost 0.003000 credits\n"
    )


def test_wait_interrupted_exits_130_and_keeps_job(tenant, monkeypatch):
    job_id = tenant.client.submit(T4_JOB, {"gpuType": "A100"}, "5").job_id

    def interrupt(seconds: float) -> None:
        raise KeyboardInterrupt

    # Ctrl-C arrives while `Client.wait` sleeps between two polls.
    monkeypatch.setattr(sdk.client, "time", SimpleNamespace(sleep=interrupt))
    code, out, err = tenant.cac("wait", job_id)
    monkeypatch.undo()
    job = tenant.client.get(job_id)
    tenant.client.cancel(job_id)
    tenant.client.wait(job_id, **WAIT)

    assert code == 130
    assert out == ""
    assert err.splitlines()[-1] == (
        f"stopped waiting; job {job_id} keeps running (`cac cancel {job_id}` stops it)"
    )
    assert job.is_final is False
    assert job.max_budget == Decimal(5)

"""`local`: this machine as a compute provider, running each job's command as a process.

Each instance is a job directory `work_root/<client token>/`, and the instance id is the
client token. The directory contains:

* `input/`, `output/`: the job's files. The command gets their absolute paths in
  `$CAC_INPUT_DIR` and `$CAC_OUTPUT_DIR`, and runs with the job directory as working directory.
* `launch.lock`: created exclusively by the first `provision`; its mtime is the launch time.
* `job.json`: job id, image, command and the names of the job's environment variables.
* `job.log`: stdout and stderr of the command, and the runner's error messages.
* `start.json`, `exit.json`: written by `providers.local_runner`, see there.
* `terminate.json`: the time of the first `terminate` request.
* `outputs.json`: the record of the output upload, see `providers.local_staging`.

With an object store, `provision` copies the job's input object, if one was uploaded by then,
to `input/input` before the command starts. Once the command has exited, the first `status` or
`terminate` call uploads the archive of `output/` before it returns the final state, so a job
reported finished has its outputs in the store.

All state lives in these files, so a restarted worker, or another `LocalProvider` object,
reads status and terminates jobs that an earlier one launched. The image is only recorded,
because the command runs directly on this machine without a container engine. Billing is
wall-clock time from the runner's start to the command's exit, on this machine's clock; the
caller's `now` is ignored. POSIX only, because jobs are stopped by signalling their process group.
"""

import asyncio
import json
import logging
import math
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

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
    TransientProviderError,
)
from providers.local_runner import (
    EXIT_FILE,
    JOB_FILE,
    LOG_FILE,
    START_FILE,
    write_json_atomic,
)
from providers.local_staging import UploadInProgress, download_input, upload_outputs_once
from storage.base import (
    InvalidObjectKey,
    ObjectStore,
    ObjectStoreError,
    job_input_key,
    job_output_key,
)

logger = logging.getLogger(__name__)

LAUNCH_FILE = "launch.lock"
TERMINATE_FILE = "terminate.json"
INPUT_DIR = "input"
OUTPUT_DIR = "output"

RUNNER_PATH = Path(__file__).with_name("local_runner.py")

LAUNCH_TIMEOUT_SECONDS = 30.0
"""Seconds after launch by which the runner must have written `start.json`, or the job fails."""

INSTANCE_TYPE = "local-process"
REGION = "local"
START_SECONDS = 1

_INSTANCE_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@-]{0,199}")
_POLL_INTERVAL_SECONDS = 0.05

# Runners that this process started. They are its children, so they stay zombies, and their
# process groups look alive, until they are waited for. Every status check polls them.
_runner_processes: dict[int, subprocess.Popen[bytes]] = {}


class LocalProvider:
    """Runs jobs as processes on this machine. CPU only, because this machine has no GPU."""

    def __init__(
        self,
        name: str = "local",
        *,
        work_root: Path,
        price_per_hour_micros: int,
        terminate_grace_seconds: float = 5.0,
        kill_wait_seconds: float = 2.0,
        store: ObjectStore | None = None,
    ) -> None:
        """Create the provider.

        Args:
            name: Name of the provider in the registry.
            work_root: Directory that contains one directory per job; created when needed.
            price_per_hour_micros: Price in micro-credits per wall-clock hour.
            terminate_grace_seconds: Seconds that `terminate` waits after SIGTERM before
                it sends SIGKILL.
            kill_wait_seconds: Seconds that `terminate` waits after SIGKILL for the
                process group to exit before it raises TransientProviderError.
            store: Store of job inputs and outputs; None stages nothing in or out.
        """
        self.name = name
        self.work_root = work_root.resolve()
        self.price_per_hour_micros = price_per_hour_micros
        self.terminate_grace_seconds = terminate_grace_seconds
        self.kill_wait_seconds = kill_wait_seconds
        self.store = store

    async def quote(self, request: QuoteRequest) -> list[Offer]:
        """Return one offer for a CPU-only request and none for a GPU request."""
        wants_gpu = request.gpu_count > 0 and request.gpu_type not in (None, "cpu", "CPU")
        if wants_gpu:
            return []

        return [
            Offer(
                provider=self.name,
                instance_type=INSTANCE_TYPE,
                region=REGION,
                gpu_type=None,
                gpu_count=0,
                spot=False,
                price_per_hour_micros=self.price_per_hour_micros,
                start_seconds=START_SECONDS,
                reliability=1.0,
            )
        ]

    async def provision(self, request: ProvisionRequest) -> str:
        """Start the job's command in its own process group, or adopt the one already started.

        A command that cannot be started is not an error here: the instance reports FAILED
        with exit code 127 (not found) or 126 (not executable), and the reason is in job.log.

        Raises:
            PermanentProviderError: The offer is not this provider's, the command is empty,
                the client token cannot be a directory name or the job id cannot name
                objects in the store.
            TransientProviderError: The job directory could not be written, or the input
                could not be read from the store.
        """
        if request.offer.provider != self.name:
            raise PermanentProviderError(
                f"offer is for provider {request.offer.provider!r}, not {self.name!r}"
            )
        if not request.command:
            raise PermanentProviderError(f"command of job {request.job_id} is empty")
        job_dir = self._job_dir(request.client_token)

        try:
            # An adopted instance already has its input, and its command may be reading it.
            # A job is provisioned moments after its submission, so a job with an input is
            # submitted with waitForInput and placed only after its input-ready signal.
            if self.store is not None and not (job_dir / LAUNCH_FILE).exists():
                await self._stage_input(job_dir, request.job_id)
            return self._launch(job_dir, request)
        except OSError as error:
            raise TransientProviderError(
                f"could not launch local instance {request.client_token}: {error}"
            ) from error

    async def status(self, instance_id: str, now: float) -> InstanceStatus:
        """Return the instance's state, read from its job directory; `now` is ignored.

        A final state is returned only after the job's outputs are in the store.

        Raises:
            PermanentProviderError: No job directory was launched for this id.
            TransientProviderError: The job directory could not be read, or the outputs
                could not be uploaded or are being uploaded by another call.
        """
        job_dir = self._launched_job_dir(instance_id)
        try:
            status = _read_status(instance_id, job_dir)
            if status.state in FINAL_INSTANCE_STATES:
                await self._stage_outputs(instance_id, job_dir)
            return status
        except OSError as error:
            raise TransientProviderError(
                f"could not read local instance {instance_id}: {error}"
            ) from error

    async def terminate(self, instance_id: str, now: float) -> InstanceStatus:
        """Stop the job's process group and return its final status; `now` is ignored.

        Sends SIGTERM to the process group, then SIGKILL if the group is still running
        after `terminate_grace_seconds`. The state is TERMINATED unless the command had
        already exited before the first terminate request.

        Raises:
            TransientProviderError: The runner has not started yet, the process group
                had not exited `kill_wait_seconds` after SIGKILL, or the outputs could not be
                uploaded.
            PermanentProviderError: No job directory was launched for this id.
        """
        job_dir = self._launched_job_dir(instance_id)
        try:
            status = await self._terminate(instance_id, job_dir)
            await self._stage_outputs(instance_id, job_dir)
            return status
        except OSError as error:
            raise TransientProviderError(
                f"could not terminate local instance {instance_id}: {error}"
            ) from error

    async def list_managed_instances(self) -> list[ManagedInstance]:
        """Return the launched jobs whose command is still starting or running.

        A job whose command ended has no process left, so it is not listed even before
        `terminate`. A job directory that cannot be read is left out with a warning.
        """
        if not self.work_root.is_dir():
            return []

        managed = []
        for job_dir in sorted(self.work_root.iterdir()):
            if not (job_dir / LAUNCH_FILE).exists():
                continue
            try:
                status = _read_status(job_dir.name, job_dir)
                job = _read_json(job_dir / JOB_FILE) or {}
            except (OSError, PermanentProviderError) as error:
                logger.warning("Could not read local instance %s: %s", job_dir.name, error)
                continue
            if status.state in FINAL_INSTANCE_STATES:
                continue
            managed.append(
                ManagedInstance(
                    instance_id=job_dir.name,
                    job_id=job.get("job_id", ""),
                    client_token=job.get("client_token", job_dir.name),
                )
            )
        return managed

    def log_path(self, instance_id: str) -> Path:
        """Return the path of the job's combined stdout and stderr log."""
        return self._job_dir(instance_id) / LOG_FILE

    async def find_instance(self, client_token: str) -> str | None:
        """Return the instance launched with `client_token` (its id is the token), or None."""
        if (self._job_dir(client_token) / LAUNCH_FILE).exists():
            return client_token
        return None

    async def logs(self, instance_id: str, max_bytes: int) -> str:
        """Return the last `max_bytes` bytes of the job's log; an empty string before the
        command writes any.

        Raises:
            InstanceNotFound: No job directory exists for the instance.
        """
        job_dir = self._launched_job_dir(instance_id)
        return await asyncio.to_thread(_read_tail, job_dir / LOG_FILE, max_bytes)

    def output_dir(self, instance_id: str) -> Path:
        """Return the directory that the job's command writes its outputs to."""
        return self._job_dir(instance_id) / OUTPUT_DIR

    async def _stage_input(self, job_dir: Path, job_id: str) -> None:
        try:
            job_input_key(job_id)
        except InvalidObjectKey as error:
            raise PermanentProviderError(str(error)) from error

        input_dir = job_dir / INPUT_DIR
        input_dir.mkdir(parents=True, exist_ok=True)
        try:
            found = await asyncio.to_thread(download_input, self.store, job_id, input_dir)
        except ObjectStoreError as error:
            raise TransientProviderError(
                f"could not read the input of job {job_id}: {error}"
            ) from error
        if found:
            logger.info("Copied the input of job %s into %s", job_id, input_dir)
        else:
            logger.info("Job %s has no input uploaded; its input directory is empty", job_id)

    async def _stage_outputs(self, instance_id: str, job_dir: Path) -> None:
        """Upload the job's outputs unless an earlier call did; see `local_staging`."""
        if self.store is None:
            return
        job_id = (_read_json(job_dir / JOB_FILE) or {}).get("job_id", "")
        try:
            job_output_key(job_id)
        except InvalidObjectKey as error:
            # A launch that stopped before it wrote job.json leaves no job id behind.
            logger.warning("Outputs of local instance %s are not uploaded: %s", instance_id, error)
            return

        try:
            await asyncio.to_thread(
                upload_outputs_once, self.store, job_id, job_dir, job_dir / OUTPUT_DIR
            )
        except UploadInProgress:
            raise TransientProviderError(
                f"the outputs of local instance {instance_id} are still being uploaded;"
                " call again"
            ) from None
        except ObjectStoreError as error:
            raise TransientProviderError(
                f"could not upload the outputs of local instance {instance_id}: {error}"
            ) from error

    def _job_dir(self, instance_id: str) -> Path:
        if not _INSTANCE_ID_PATTERN.fullmatch(instance_id):
            raise PermanentProviderError(
                f"invalid local instance id {instance_id!r}: use 1 to 200 letters, digits"
                " and . _ : @ -, starting with a letter or digit"
            )
        return self.work_root / instance_id

    def _launched_job_dir(self, instance_id: str) -> Path:
        job_dir = self._job_dir(instance_id)
        if not (job_dir / LAUNCH_FILE).exists():
            raise InstanceNotFound(f"local instance {instance_id} not found in {self.work_root}")
        return job_dir

    def _launch(self, job_dir: Path, request: ProvisionRequest) -> str:
        input_dir = job_dir / INPUT_DIR
        output_dir = job_dir / OUTPUT_DIR
        input_dir.mkdir(parents=True, exist_ok=True)
        output_dir.mkdir(exist_ok=True)

        # The exclusive create decides which of two concurrent provision calls launches.
        try:
            os.close(os.open(job_dir / LAUNCH_FILE, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644))
        except FileExistsError:
            logger.info(
                "Adopted local instance %s of job %s", request.client_token, request.job_id
            )
            return request.client_token

        # Only the names of the variables are recorded, because their values may be secrets.
        job = {
            "job_id": request.job_id,
            "client_token": request.client_token,
            "image": request.image,
            "command": request.command,
            "env_names": sorted(request.env),
        }
        write_json_atomic(job_dir / JOB_FILE, job)

        env = {
            **_inherited_environment(),
            **request.env,
            "CAC_JOB_ID": request.job_id,
            "CAC_INPUT_DIR": str(input_dir),
            "CAC_OUTPUT_DIR": str(output_dir),
        }
        # -I keeps the caller's PYTHONPATH and the runner's directory off the runner's
        # sys.path.
        runner_command = [sys.executable, "-I", str(RUNNER_PATH), str(job_dir)]
        with open(job_dir / LOG_FILE, "ab") as log:
            try:
                runner = subprocess.Popen(
                    runner_command,
                    cwd=job_dir,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=log,
                    start_new_session=True,
                )
            except OSError as error:
                logger.error(
                    "Could not start the runner of local instance %s: %s",
                    request.client_token,
                    error,
                )
                _record_exit(job_dir, None, f"the runner could not be started: {error}")
                return request.client_token

        _runner_processes[runner.pid] = runner
        logger.info(
            "Launched local instance %s of job %s, process group %d",
            request.client_token,
            request.job_id,
            runner.pid,
        )
        return request.client_token

    async def _terminate(self, instance_id: str, job_dir: Path) -> InstanceStatus:
        status = _read_status(instance_id, job_dir)
        if status.state in FINAL_INSTANCE_STATES:
            return status
        if status.state is InstanceState.PENDING:
            raise TransientProviderError(
                f"local instance {instance_id} is still starting; call terminate again"
            )

        # Written before the signal, so that an exit after this time reads as TERMINATED.
        _write_json_exclusive(job_dir / TERMINATE_FILE, {"requested_at": time.time()})
        process_group = _read_json(job_dir / START_FILE)["pid"]
        logger.info("Terminating local instance %s, process group %d", instance_id, process_group)
        _signal_process_group(process_group, signal.SIGTERM)

        # Wait for the whole group, not only the runner's exit record, so that no process
        # that the command started in the background outlives the instance.
        stopped = await _wait_until(
            lambda: not _process_group_alive(process_group), self.terminate_grace_seconds
        )
        if stopped:
            return _read_status(instance_id, job_dir)

        logger.warning(
            "Local instance %s still ran %g seconds after SIGTERM; sending SIGKILL",
            instance_id,
            self.terminate_grace_seconds,
        )
        _signal_process_group(process_group, signal.SIGKILL)
        gone = await _wait_until(
            lambda: not _process_group_alive(process_group), self.kill_wait_seconds
        )
        if not gone:
            raise TransientProviderError(
                f"local instance {instance_id} is still shutting down after SIGKILL;"
                " call terminate again"
            )

        # The runner is gone, so it cannot write the exit record any more. If it wrote one
        # before SIGKILL, that record is kept.
        _record_exit(job_dir, 128 + signal.SIGKILL, "killed by signal SIGKILL after SIGTERM")
        return _read_status(instance_id, job_dir)


def _read_status(instance_id: str, job_dir: Path) -> InstanceStatus:
    exit_record = _read_json(job_dir / EXIT_FILE)
    start_record = _read_json(job_dir / START_FILE)

    if exit_record is None and start_record is None:
        launched_at = (job_dir / LAUNCH_FILE).stat().st_mtime
        if time.time() - launched_at < LAUNCH_TIMEOUT_SECONDS:
            return InstanceStatus(instance_id, InstanceState.PENDING, billable_seconds=0)
        logger.warning("Runner of local instance %s did not start; marking it FAILED", instance_id)
        exit_record = _record_exit(
            job_dir, None, f"the runner did not start within {LAUNCH_TIMEOUT_SECONDS:g} seconds"
        )

    elif exit_record is None:
        # NOTE: if the runner died without an exit record and its pid was reused for a new
        # process group, that group is taken for the job's, and terminate would signal it.
        if _process_group_alive(start_record["pid"]):
            return InstanceStatus(
                instance_id,
                InstanceState.RUNNING,
                billable_seconds=_seconds_between(start_record["started_at"], time.time()),
            )
        # The runner may have written the record between the first read and the check.
        exit_record = _read_json(job_dir / EXIT_FILE)
        if exit_record is None:
            logger.warning(
                "Runner of local instance %s stopped without an exit record; marking it FAILED",
                instance_id,
            )
            exit_record = _record_exit(
                job_dir, None, "the runner stopped without recording an exit code"
            )

    return _final_status(instance_id, job_dir, start_record, exit_record)


def _final_status(
    instance_id: str,
    job_dir: Path,
    start_record: dict[str, Any] | None,
    exit_record: dict[str, Any],
) -> InstanceStatus:
    ended_at = exit_record["ended_at"]
    exit_code = exit_record["exit_code"]
    terminate_record = _read_json(job_dir / TERMINATE_FILE)

    # A command that exited before the first terminate request keeps its own outcome.
    if terminate_record is not None and ended_at >= terminate_record["requested_at"]:
        state = InstanceState.TERMINATED
    elif exit_code == 0:
        state = InstanceState.SUCCEEDED
    else:
        state = InstanceState.FAILED

    billable_seconds = 0
    if start_record is not None:
        billable_seconds = _seconds_between(start_record["started_at"], ended_at)

    return InstanceStatus(
        instance_id,
        state,
        billable_seconds=billable_seconds,
        exit_code=exit_code,
        message=exit_record["message"],
    )


def _record_exit(job_dir: Path, exit_code: int | None, message: str) -> dict[str, Any]:
    """Write the exit record unless one exists, and return the record that is on disk."""
    _write_json_exclusive(
        job_dir / EXIT_FILE, {"exit_code": exit_code, "ended_at": time.time(), "message": message}
    )
    return _read_json(job_dir / EXIT_FILE)


def _write_json_exclusive(path: Path, data: dict[str, Any]) -> None:
    """Write `data` to `path` atomically unless `path` exists; the first writer wins."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{time.monotonic_ns()}.tmp")
    temporary.write_text(json.dumps(data), encoding="utf-8")
    try:
        os.link(temporary, path)
    except FileExistsError:
        pass
    finally:
        temporary.unlink()


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError as error:
        raise PermanentProviderError(f"corrupt state file {path}: {error}") from error


def _seconds_between(start: float, end: float) -> int:
    return max(0, math.ceil(end - start))


def _signal_process_group(process_group: int, signal_number: signal.Signals) -> None:
    try:
        os.killpg(process_group, signal_number)
    except ProcessLookupError:
        pass
    except PermissionError as error:
        raise PermanentProviderError(
            f"not permitted to signal process group {process_group}: {error}"
        ) from error


def _process_group_alive(process_group: int) -> bool:
    """Return whether any process of the group still runs; zombies count as exited."""
    for pid, runner in list(_runner_processes.items()):
        if runner.poll() is not None:
            del _runner_processes[pid]

    try:
        os.killpg(process_group, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True

    # kill(0) also succeeds for zombies, which are processes that exited and that no parent
    # has waited for yet, such as orphans under an init that does not reap them. On Linux,
    # /proc/<pid>/stat shows their state as Z. Elsewhere a group of zombies counts as alive.
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    if _process_runs_in_group(proc / str(process_group), process_group):
        return True
    return any(
        _process_runs_in_group(entry, process_group)
        for entry in proc.iterdir()
        if entry.name.isdigit()
    )


def _process_runs_in_group(proc_entry: Path, process_group: int) -> bool:
    try:
        stat = (proc_entry / "stat").read_text()
    except OSError:
        return False

    # The command name in brackets may contain spaces, so the fields start after the last ")".
    fields = stat[stat.rfind(")") + 2 :].split()
    state, group = fields[0], int(fields[2])
    return group == process_group and state not in ("Z", "X")


async def _wait_until(condition: Callable[[], bool], timeout_seconds: float) -> bool:
    """Poll `condition` until it is true or the timeout passes; return its last value."""
    deadline = time.monotonic() + timeout_seconds
    while not condition():
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL_INTERVAL_SECONDS)
    return True


INHERITED_VARIABLES = frozenset(
    {"PATH", "HOME", "USER", "LOGNAME", "SHELL", "LANG", "TERM", "TMPDIR", "TZ", "PYTHONPATH",
     "VIRTUAL_ENV"}
)
"""Variables of the worker's environment that a job's command receives, besides `LC_*`.

Everything else stays out, because the worker's environment holds secrets (the JWT secret,
the database URL, cloud credentials) that a job's command must not read."""


def _inherited_environment() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name in INHERITED_VARIABLES or name.startswith("LC_")
    }


def _read_tail(path: Path, max_bytes: int) -> str:
    try:
        with path.open("rb") as log:
            log.seek(0, os.SEEK_END)
            size = log.tell()
            log.seek(max(0, size - max_bytes))
            return log.read(max_bytes).decode("utf-8", errors="replace")
    except FileNotFoundError:
        return ""

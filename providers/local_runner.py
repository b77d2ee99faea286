"""Run one `local` job's command and record its start and exit in the job directory.

`LocalProvider` starts this file as a script, `python -I local_runner.py JOB_DIR`, in a new
session, with stdout and stderr appended to the job's log and the job's environment already
set. It imports only the standard library, so it runs whether or not the project is installed.

The runner writes `start.json` (its pid, which is also the process group id, and the start
time) before it starts the command, and `exit.json` (exit code, end time, message) after the
command exits. Both are written atomically, so a reader sees either the whole file or none.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import FrameType
from typing import Any

JOB_FILE = "job.json"
"""The job's image, command and ids, written by the provider before the runner starts."""

START_FILE = "start.json"
"""Runner pid and start time, written by the runner before it starts the command."""

EXIT_FILE = "exit.json"
"""Exit code, end time and message, written once the command has exited."""

LOG_FILE = "job.log"
"""Combined stdout and stderr of the runner and the command."""

COMMAND_NOT_FOUND_EXIT_CODE = 127
"""Exit code for a command whose executable does not exist, as in POSIX shells."""

COMMAND_NOT_EXECUTABLE_EXIT_CODE = 126
"""Exit code for a command that exists but cannot be executed, as in POSIX shells."""


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    """Write `data` as JSON to `path` through a temporary file and a rename."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(data), encoding="utf-8")
    os.replace(temporary, path)


def _ignore_terminate(signum: int, frame: FrameType | None) -> None:
    # The provider signals the whole process group. The command gets the signal and exits,
    # and the runner stays alive to record that exit. exec resets this handler to the
    # default, so the command itself does not inherit it.
    pass


def _run_command(command: list[str], job_dir: Path) -> tuple[int, str]:
    try:
        process = subprocess.Popen(command, cwd=job_dir, stdin=subprocess.DEVNULL)
    except FileNotFoundError as error:
        message = f"command not found: {command[0]!r} ({error.strerror})"
        print(message, file=sys.stderr, flush=True)
        return COMMAND_NOT_FOUND_EXIT_CODE, message
    except OSError as error:
        message = f"command could not be started: {command[0]!r} ({error.strerror})"
        print(message, file=sys.stderr, flush=True)
        return COMMAND_NOT_EXECUTABLE_EXIT_CODE, message

    returncode = process.wait()
    if returncode >= 0:
        return returncode, ""

    # Report a signal the way shells do, as 128 + the signal number.
    signal_number = -returncode
    return 128 + signal_number, f"killed by signal {signal.Signals(signal_number).name}"


def main(argv: list[str]) -> int:
    """Run the command of the job in `argv[1]` and record its start and exit."""
    job_dir = Path(argv[1])
    signal.signal(signal.SIGTERM, _ignore_terminate)

    write_json_atomic(job_dir / START_FILE, {"pid": os.getpid(), "started_at": time.time()})
    job = json.loads((job_dir / JOB_FILE).read_text(encoding="utf-8"))

    exit_code, message = _run_command(job["command"], job_dir)
    write_json_atomic(
        job_dir / EXIT_FILE, {"exit_code": exit_code, "ended_at": time.time(), "message": message}
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

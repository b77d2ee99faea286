"""The user data script that runs a job on an EC2 instance, and how its outcome is read back.

cloud-init runs a user data script that starts with `#!` once, as root, at the instance's first
boot. The script runs the job's image with Docker on all GPUs, writes the command's exit code
to the serial console as `cac-exit-code=<code>`, and powers the instance off. The instance is
launched with `InstanceInitiatedShutdownBehavior=terminate`, so powering off terminates it and
nothing is left to clean up. The adapter reads the exit code back with `GetConsoleOutput`,
which needs no access from the instance to AWS.

The AMI must have Docker and the NVIDIA container toolkit, as AWS's Deep Learning Base AMIs do.

NOTE: user data is readable on the instance through the instance metadata service, and by
any principal allowed `ec2:DescribeInstanceAttribute`. The job's environment variables are
in it, so a secret passed there is visible to them.
"""

import re
import shlex

from providers.base import PermanentProviderError

EXIT_CODE_MARKER = "cac-exit-code="

MAX_USER_DATA_BYTES = 16 * 1024
"""Largest user data that EC2 accepts, before base64 encoding."""

_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_EXIT_CODE = re.compile(re.escape(EXIT_CODE_MARKER) + r"(\d+)")


def job_user_data(*, job_id: str, image: str, command: list[str], env: dict[str, str]) -> str:
    """Return the user data script that runs one job and powers the instance off.

    Raises:
        PermanentProviderError: An environment variable name is invalid, or the script is
            larger than EC2 accepts.
    """
    for name in env:
        if not _ENV_NAME.fullmatch(name):
            raise PermanentProviderError(
                f"invalid environment variable name {name!r} for job {job_id}: use letters,"
                " digits and _, not starting with a digit"
            )

    variables = {**env, "CAC_JOB_ID": job_id}
    env_options = " ".join(
        f"-e {shlex.quote(f'{name}={value}')}" for name, value in variables.items()
    )
    docker_run = (
        f"docker run --rm --gpus all {env_options} {shlex.quote(image)} {shlex.join(command)}"
    )

    script = "\n".join(
        [
            "#!/bin/bash",
            f"# compute-as-credit job {_comment_safe(job_id)}: run the job's container, report",
            "# its exit code on the console, then power off (which terminates the instance).",
            docker_run,
            "code=$?",
            f'echo "{EXIT_CODE_MARKER}$code" | tee /dev/console',
            "shutdown -h now",
            "",
        ]
    )

    size = len(script.encode())
    if size > MAX_USER_DATA_BYTES:
        raise PermanentProviderError(
            f"the user data of job {job_id} is {size} bytes, above EC2's limit of"
            f" {MAX_USER_DATA_BYTES}; shorten the command or the environment"
        )
    return script


def exit_code_from_console(console_output: str | None) -> int | None:
    """Return the last exit code that the script wrote to the console, or None if there is none."""
    if not console_output:
        return None
    codes = _EXIT_CODE.findall(console_output)
    return int(codes[-1]) if codes else None


def _comment_safe(text: str) -> str:
    return text.replace("\n", " ").replace("\r", " ")

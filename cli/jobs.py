"""`cac submit`, `status`, `list`, `wait`, `cancel` and `logs`: jobs over the API's SDK.

Like the billing commands, each reads the API's URL from `--api-url` or `CAC_API_URL` and its
bearer token from `--token` or `CAC_TOKEN`, and prints text for people or, with `--json`, the
API's JSON for scripts. While `cac wait` and `cac submit --wait` wait, they show the job's
status, provider and cost so far on standard error: one line rewritten in place on a terminal,
otherwise one line per status change.

Exit status:

- 0: the request succeeded; for `cac wait` and `cac submit --wait`, the job SUCCEEDED.
- 1: a request failed, or the job was not final within `--timeout`.
- 2: invalid arguments or job file.
- 3: the job ended FAILED or CANCELLED (`cac wait` and `cac submit --wait` only).
- 130: Ctrl-C stopped the waiting; the job keeps running.
"""

import argparse
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Self, TextIO

from cli.billing import (
    EXIT_FAILED,
    UsageError,
    api_arguments,
    print_json,
    print_table,
    run_client_command,
)
from cli.dev import DevError, load_job_file
from sdk import JOB_STATUSES, Client, Job, JobSummary, WaitTimeout

EXIT_JOB_UNSUCCESSFUL = 3
"""Exit status of `cac wait` and `cac submit --wait` when the job ended FAILED or CANCELLED."""

EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C, as a shell reports a process ended by SIGINT."""

DEFAULT_POLL_INTERVAL_SECONDS = 2.0

JOB_FILE_FIELDS = ("agentSpec", "resourceHint", "maxBudget", "callbackUrl")
"""Fields that a job file may contain: the body of `POST /v1/jobs`."""


def add_job_commands(commands: argparse._SubParsersAction) -> None:
    """Add the job commands to the `cac` parser's subcommands."""
    api = api_arguments()

    submit = commands.add_parser(
        "submit",
        parents=[api],
        help="submit the job in a JSON file and print its id (scope jobs:write; with --wait"
        " also jobs:read)",
    )
    submit.add_argument(
        "file",
        type=Path,
        metavar="FILE",
        help="JSON job with agentSpec, maxBudget and optionally resourceHint and callbackUrl,"
        " such as examples/primes.json",
    )
    submit.add_argument(
        "--idempotency-key",
        metavar="KEY",
        help="a retry with the same key returns the first job instead of starting another",
    )
    submit.add_argument(
        "--wait", action="store_true", help="wait until the job is final, as `cac wait` does"
    )
    _add_wait_arguments(submit)
    submit.set_defaults(handler=run_client_command(_submit))

    status = commands.add_parser(
        "status", parents=[api], help="print a job's status, provider and cost (scope jobs:read)"
    )
    status.add_argument("job_id", metavar="JOB", help="job id")
    status.set_defaults(handler=run_client_command(_status))

    listing = commands.add_parser(
        "list",
        parents=[api],
        help="print the token's tenant's jobs: running ones first, then ended ones, newest first"
        " (scope jobs:read)",
    )
    listing.add_argument(
        "--status",
        action="append",
        choices=JOB_STATUSES,
        help="only jobs with this status; repeat it for jobs with any of several",
    )
    listing.add_argument("--gpu-type", metavar="TYPE", help="only jobs that requested this GPU")
    listing.add_argument(
        "--limit",
        type=int,
        metavar="N",
        help="jobs per page (default: the API's page size)",
    )
    listing.add_argument(
        "--cursor", help="start at this page: the cursor that the previous page printed"
    )
    listing.add_argument("--all", action="store_true", help="read every page")
    listing.set_defaults(handler=run_client_command(_list))

    wait = commands.add_parser(
        "wait",
        parents=[api],
        help="wait until a job is SUCCEEDED, FAILED or CANCELLED; exit 0 if it SUCCEEDED, 3"
        " otherwise (scope jobs:read)",
    )
    wait.add_argument("job_id", metavar="JOB", help="job id")
    _add_wait_arguments(wait)
    wait.set_defaults(handler=run_client_command(_wait))

    cancel = commands.add_parser(
        "cancel",
        parents=[api],
        help="request that a job stop; it settles what it used and ends CANCELLED"
        " (scope jobs:write)",
    )
    cancel.add_argument("job_id", metavar="JOB", help="job id")
    cancel.add_argument("--reason", help="why; the job's failureReason shows it")
    cancel.set_defaults(handler=run_client_command(_cancel))

    logs = commands.add_parser(
        "logs", parents=[api], help="print what a job's command wrote so far (scope jobs:read)"
    )
    logs.add_argument("job_id", metavar="JOB", help="job id")
    logs.add_argument(
        "--max-bytes",
        type=int,
        metavar="N",
        help="bytes of each instance's output to print, from its end (default: the API's 64 KiB)",
    )
    logs.set_defaults(handler=run_client_command(_logs))


def _add_wait_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="give up after this many seconds and exit 1 (default: wait until the job is final)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        metavar="SECONDS",
        help=f"seconds between two reads of the job (default: {DEFAULT_POLL_INTERVAL_SECONDS})",
    )


def _check_wait_arguments(args: argparse.Namespace) -> None:
    """Reject invalid waiting options before anything is submitted."""
    if not getattr(args, "wait", True):
        if args.timeout is not None or args.poll_interval is not None:
            raise UsageError("--timeout and --poll-interval apply only with --wait")
        return
    if args.timeout is not None and args.timeout < 0:
        raise UsageError(f"--timeout must be 0 or more seconds, got {args.timeout}")
    if args.poll_interval is not None and args.poll_interval <= 0:
        raise UsageError(f"--poll-interval must be more than 0 seconds, got {args.poll_interval}")


def _submit(client: Client, args: argparse.Namespace) -> int | None:
    spec = _read_job_file(args.file)
    _check_wait_arguments(args)
    submitted = client.submit(
        spec["agentSpec"],
        spec.get("resourceHint") or {},
        spec["maxBudget"],
        args.idempotency_key,
        callback_url=spec.get("callbackUrl"),
    )

    # With --wait and --json, the final job is the only output.
    if args.json and not args.wait:
        print_json(submitted.raw)
    elif not args.json and submitted.replayed:
        print(
            f"job {submitted.job_id} was already submitted with this idempotency key;"
            f" it is {submitted.status}",
            flush=True,
        )
    elif not args.json:
        print(f"submitted job {submitted.job_id}", flush=True)

    if not args.wait:
        return None
    return _wait_and_report(client, submitted.job_id, args)


def _read_job_file(path: Path) -> dict[str, Any]:
    try:
        spec = load_job_file(path)
    except DevError as error:
        raise UsageError(str(error)) from None
    unknown = sorted(set(spec) - set(JOB_FILE_FIELDS))
    if unknown:
        raise UsageError(
            f"the job file {path} has unknown fields {', '.join(unknown)};"
            f" it may contain {', '.join(JOB_FILE_FIELDS)}"
        )
    return spec


def _status(client: Client, args: argparse.Namespace) -> None:
    job = client.get(args.job_id)
    if args.json:
        print_json(job.raw)
    else:
        _print_job(job)


def _list(client: Client, args: argparse.Namespace) -> None:
    if args.limit is not None and args.limit < 1:
        raise UsageError(f"--limit must be 1 or more, got {args.limit}")

    jobs: list[JobSummary] = []
    raw_jobs: list[dict[str, Any]] = []
    cursor = args.cursor
    while True:
        page = client.list(
            status=args.status, gpu_type=args.gpu_type, limit=args.limit, cursor=cursor
        )
        jobs.extend(page.jobs)
        raw_jobs.extend(page.raw["jobs"])
        cursor = page.next_cursor
        if cursor is None or not args.all:
            break

    if args.json:
        print_json({"jobs": raw_jobs, "nextCursor": cursor})
        return
    if not jobs:
        print("no jobs")
        return

    header = ["JOB", "STATUS", "PROVIDER", "GPU", "COST", "SUBMITTED (UTC)", "CLOSED (UTC)"]
    rows = [header] + [
        [
            job.job_id,
            job.status,
            job.provider or "-",
            job.gpu_type or "-",
            str(job.cost) if job.cost is not None else "-",
            _format_time(job.submitted_at),
            _format_time(job.closed_at),
        ]
        for job in jobs
    ]
    print_table(rows, right_aligned={4})
    if cursor is not None:
        print(f"\nMore jobs: run again with --cursor {cursor}, or with --all.")


def _wait(client: Client, args: argparse.Namespace) -> int:
    _check_wait_arguments(args)
    return _wait_and_report(client, args.job_id, args)


def _cancel(client: Client, args: argparse.Namespace) -> None:
    job = client.cancel(args.job_id, args.reason)
    if args.json:
        print_json(job.raw)
    elif job.is_final and job.status != "CANCELLED":
        # The workflow is still settling a job that ended on its own.
        print(f"job {job.job_id} already ended {job.status}; nothing to cancel")
    else:
        print(
            f"cancel requested for job {job.job_id}, which is {job.status};"
            f" `cac wait {job.job_id}` waits until it is CANCELLED and settled"
        )


def _logs(client: Client, args: argparse.Namespace) -> None:
    text = client.logs(args.job_id, max_bytes=args.max_bytes)
    if args.json:
        print_json({"jobId": args.job_id, "logs": text})
        return
    sys.stdout.write(text)
    if text and not text.endswith("\n"):
        sys.stdout.write("\n")


def _wait_and_report(client: Client, job_id: str, args: argparse.Namespace) -> int:
    """Wait for the job with a progress line, print it, and return the exit status."""
    poll_interval = args.poll_interval or DEFAULT_POLL_INTERVAL_SECONDS
    try:
        with ProgressLine(sys.stderr) as progress:
            job = client.wait(
                job_id,
                timeout=args.timeout,
                poll_interval=poll_interval,
                on_update=progress.update,
            )
    except WaitTimeout as error:
        print(
            f"error: {error}; run `cac wait {job_id}` again to keep waiting", file=sys.stderr
        )
        return EXIT_FAILED
    except KeyboardInterrupt:
        print(
            f"stopped waiting; job {job_id} keeps running (`cac cancel {job_id}` stops it)",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED

    if args.json:
        print_json(job.raw)
    else:
        _print_job(job)
    return 0 if job.status == "SUCCEEDED" else EXIT_JOB_UNSUCCESSFUL


class ProgressLine:
    """The status, provider and cost of a job being waited for, on a text stream.

    On a terminal the line is rewritten in place at each update. On anything else, such as a
    log file, a new line is written only when the status changes. Leaving the context ends the
    line, so that later output starts on a new line.
    """

    def __init__(self, stream: TextIO) -> None:
        self._stream = stream
        self._in_place = stream.isatty()
        self._last_status: str | None = None
        self._open = False

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if self._open:
            self._stream.write("\n")
            self._stream.flush()
            self._open = False

    def update(self, job: Job) -> None:
        """Show the job's latest state."""
        line = describe_progress(job)
        if self._in_place:
            # Carriage return, then erase to the end of the line: the new text replaces the old.
            self._stream.write(f"\r\x1b[K{line}")
            self._open = True
        elif job.status != self._last_status:
            self._stream.write(f"{line}\n")
        self._last_status = job.status
        self._stream.flush()


def describe_progress(job: Job) -> str:
    """Describe a job in one line: id, status, provider and cost so far."""
    line = f"job {job.job_id}: {job.status}"
    if job.provider is not None:
        line += f" on {job.provider}"
    if job.cost is not None:
        line += f", cost {job.cost} credits"
    return line


def _print_job(job: Job) -> None:
    rows = [("job", job.job_id), ("status", job.status)]
    if job.failure_reason:
        rows.append(("reason", job.failure_reason))
    if job.quote is not None:
        quote = job.quote
        gpus = f"{quote.gpu_count}x{quote.gpu_type}" if quote.gpu_type else "cpu"
        spot = ", spot" if quote.spot else ""
        offer = (
            f"{quote.provider} ({quote.instance_type}, {gpus}, {quote.region}{spot},"
            f" {quote.price_per_hour} credits/hour)"
        )
        rows.append(("provider", offer))
    if job.exit_code is not None:
        rows.append(("exit code", str(job.exit_code)))
    if job.cost is not None:
        rows.append(("cost", f"{job.cost} credits"))
    if job.max_budget is not None:
        rows.append(("budget", f"{job.max_budget} credits"))
    if job.held is not None and job.captured is not None and job.released is not None:
        rows.append(
            ("ledger", f"held {job.held}, captured {job.captured}, released {job.released}")
        )
    rows.extend(
        (name, _format_time(moment))
        for name, moment in (
            ("submitted", job.submitted_at),
            ("started", job.started_at),
            ("finished", job.finished_at),
        )
        if moment is not None
    )

    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def _format_time(moment: datetime | None) -> str:
    if moment is None:
        return "-"
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")

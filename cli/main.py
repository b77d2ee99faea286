"""`cac`: mint tokens, run the API, the worker or the whole system in dev mode, read and move
credits over the API, and audit the ledger."""

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from api.app import serve
from api.auth import BILLING_READ, JOBS_READ, JOBS_WRITE, mint_token
from cli.billing import add_billing_commands
from cli.dev import DevError, DevOptions, run_dev
from cli.jobs import add_job_commands
from cli.ledger_verify import add_ledger_commands
from cli.ops import add_ops_commands
from config import Settings
from config.logging import configure_logging
from worker.main import run_worker

logger = logging.getLogger(__name__)

DEFAULT_TOKEN_TTL_SECONDS = 24 * 3600


def build_parser() -> argparse.ArgumentParser:
    """Build the parser of the `cac` command line."""
    parser = argparse.ArgumentParser(
        prog="cac",
        description="Run GPU jobs across compute providers, billed in credits.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    token = commands.add_parser(
        "token", help="print an API token signed with the configured secret (CAC_JWT_SECRET)"
    )
    token.add_argument("--sub", required=True, help="tenant the token acts for (its subject)")
    token.add_argument(
        "--scope",
        default=f"{JOBS_READ} {JOBS_WRITE} {BILLING_READ}",
        help='space-separated scopes to grant (default: "%(default)s")',
    )
    token.add_argument(
        "--ttl",
        type=int,
        default=DEFAULT_TOKEN_TTL_SECONDS,
        metavar="SECONDS",
        help="seconds until the token expires (default: %(default)s)",
    )

    commands.add_parser("api", help="run the API server alone")
    commands.add_parser("worker", help="run the Temporal worker alone")

    dev = commands.add_parser(
        "dev", help="run the Temporal dev server, the worker and the API together"
    )
    dev.add_argument(
        "--run",
        type=Path,
        metavar="FILE",
        help="submit the job in FILE (JSON with agentSpec, resourceHint, maxBudget),"
        " follow it to its end, and exit: 0 if it SUCCEEDED, else 1",
    )
    dev.add_argument(
        "--data-dir",
        type=Path,
        metavar="DIR",
        help="directory for the Temporal history, the ledger and the logs"
        " (default: CAC_DATA_DIR, else .cac)",
    )
    dev.add_argument(
        "--timeout",
        type=float,
        default=DevOptions.run_timeout,
        metavar="SECONDS",
        help="seconds to wait for the job of --run to finish (default: %(default)s)",
    )
    dev.add_argument(
        "--temporal-port",
        type=int,
        default=DevOptions.temporal_port,
        metavar="PORT",
        help="port of the Temporal frontend (default: %(default)s)",
    )
    dev.add_argument(
        "--ui-port",
        type=int,
        default=DevOptions.ui_port,
        metavar="PORT",
        help="port of the Temporal Web UI (default: %(default)s)",
    )

    # Each of these commands sets `handler`, which `main` calls with the arguments and the
    # settings.
    add_job_commands(commands)
    add_billing_commands(commands)
    add_ledger_commands(commands)
    add_ops_commands(commands)
    return parser


SERVICE_COMMANDS = frozenset({"api", "worker"})
"""Long-running commands, which log JSON lines for log collectors instead of plain text."""


def main(argv: list[str] | None = None) -> int:
    """Run the `cac` command line and return its exit code."""
    args = build_parser().parse_args(argv)

    try:
        settings = Settings()
    except ValidationError as error:
        print(f"error: invalid settings in the environment:\n{error}", file=sys.stderr)
        return 2

    if args.command in SERVICE_COMMANDS:
        configure_logging(settings.log_level)
    else:
        logging.basicConfig(
            level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
    # One line per HTTP request or migration step would bury the output of `cac dev`.
    for noisy in ("httpx", "alembic"):
        logging.getLogger(noisy).setLevel(logging.WARNING)

    handler = getattr(args, "handler", None)
    if handler is not None:
        return handler(args, settings)
    if args.command == "token":
        return _print_token(settings, args)
    if args.command == "api":
        try:
            settings.check_production_safety()
        except ValueError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        serve(settings)
        return 0
    if args.command == "worker":
        _run_until_signalled(run_worker(settings))
        return 0

    options = DevOptions(
        data_dir=args.data_dir,
        run_file=args.run,
        run_timeout=args.timeout,
        temporal_port=args.temporal_port,
        ui_port=args.ui_port,
    )
    try:
        return run_dev(options)
    except DevError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


def _print_token(settings: Settings, args: argparse.Namespace) -> int:
    try:
        token = mint_token(
            settings.jwt_secret.get_secret_value(),
            subject=args.sub,
            scopes=args.scope.split(),
            ttl_seconds=args.ttl,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
        )
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(token)
    return 0


def _run_until_signalled(coroutine: Coroutine[Any, Any, None]) -> None:
    """Run `coroutine` until it returns or SIGINT or SIGTERM cancels it."""

    async def run() -> None:
        task = asyncio.current_task()
        assert task is not None
        loop = asyncio.get_running_loop()
        for signal_number in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signal_number, task.cancel)
        try:
            await coroutine
        except asyncio.CancelledError:
            logger.info("stopped by signal")

    asyncio.run(run())


if __name__ == "__main__":
    sys.exit(main())

"""`cac balance`, `cac statement`, `cac grant` and `cac refund`: billing over the API's SDK.

Each command reads the API's URL from `--api-url` or `CAC_API_URL` and its bearer token from
`--token` or `CAC_TOKEN`, prints a table for people or, with `--json`, the API's JSON for
scripts. Exit status: 0 on success, 1 when the request failed, 2 for invalid arguments.
"""

import argparse
import json
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import httpx

from config import Settings
from sdk import ApiError, Client

DEFAULT_API_URL = "http://127.0.0.1:8080"

EXIT_FAILED = 1
EXIT_USAGE = 2


class UsageError(Exception):
    """An argument or the environment is invalid. The message names which and how to fix it."""


def api_arguments() -> argparse.ArgumentParser:
    """Return a parent parser with the options of every command that calls the API."""
    api = argparse.ArgumentParser(add_help=False)
    api.add_argument(
        "--api-url",
        metavar="URL",
        help=f"root URL of the API (default: CAC_API_URL, else {DEFAULT_API_URL})",
    )
    api.add_argument("--token", help="bearer token (default: CAC_TOKEN); mint one with `cac token`")
    api.add_argument("--json", action="store_true", help="print the API's JSON instead of a table")
    return api


def add_billing_commands(commands: argparse._SubParsersAction) -> None:
    """Add the billing commands to the `cac` parser's subcommands."""
    api = api_arguments()

    balance = commands.add_parser(
        "balance",
        parents=[api],
        help="print the available, held and spent credits of the token's tenant"
        " (scope billing:read)",
    )
    balance.set_defaults(handler=run_client_command(_balance))

    quotes = commands.add_parser(
        "quotes",
        parents=[api],
        help="print the offers a job with these resources would choose from, cheapest first"
        " (scope jobs:read)",
    )
    quotes.add_argument("--gpu-type", metavar="TYPE", help="GPU model such as A100; none for CPU")
    quotes.add_argument(
        "--gpu-count", type=int, metavar="N", help="number of GPUs (default: 1 with a type, else 0)"
    )
    quotes.add_argument("--spot-ok", action="store_true", help="include spot (interruptible) offers")
    quotes.set_defaults(handler=run_client_command(_quotes))

    statement = commands.add_parser(
        "statement",
        parents=[api],
        help="print the token's tenant's transactions, newest first (scope billing:read)",
    )
    statement.add_argument(
        "--limit",
        type=int,
        default=50,
        metavar="N",
        help="entries per page, from 1 to 200 (default: %(default)s)",
    )
    statement.add_argument(
        "--cursor", help="start at this page: the cursor that the previous page printed"
    )
    statement.add_argument(
        "--all", action="store_true", help="read every page, down to the oldest entry"
    )
    statement.set_defaults(handler=run_client_command(_statement))

    grant = commands.add_parser(
        "grant", parents=[api], help="grant credits to a tenant (scope billing:admin)"
    )
    grant.add_argument("tenant", metavar="TENANT", help="tenant that receives the credits")
    grant.add_argument("amount", metavar="AMOUNT", help="credits, at most six decimal places")
    grant.add_argument("--reason", required=True, help="why; the tenant's statement shows it")
    grant.add_argument(
        "--expires-at",
        metavar="ISO",
        help="when the credits expire, with a timezone, such as 2030-01-01T00:00:00Z"
        " (default: never)",
    )
    _add_key_argument(grant)
    grant.set_defaults(handler=run_client_command(_grant))

    refund = commands.add_parser(
        "refund",
        parents=[api],
        help="refund a job's captured cost to the tenant that paid it (scope billing:admin)",
    )
    refund.add_argument("job_id", metavar="JOB", help="job whose cost is refunded")
    refund.add_argument("--amount", help="credits to refund (default: all that is left to refund)")
    refund.add_argument("--reason", required=True, help="why; the tenant's statement shows it")
    _add_key_argument(refund)
    refund.set_defaults(handler=run_client_command(_refund))


def _add_key_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--key",
        help="idempotency key: running the command again with the same key posts nothing"
        " new (default: a new random key, printed with the result)",
    )


def run_client_command(
    command: Callable[[Client, argparse.Namespace], int | None],
) -> Callable[[argparse.Namespace, Settings], int]:
    """Wrap `command` with the API client and the error handling that every command shares.

    The wrapper takes the settings like every `cac` handler, but the API's URL and token
    come from the arguments and the environment, not from the settings. Its exit status is
    what `command` returns, or 0 when `command` returns None.
    """

    def run(args: argparse.Namespace, _settings: Settings) -> int:
        api_url = args.api_url or os.environ.get("CAC_API_URL") or DEFAULT_API_URL
        token = args.token or os.environ.get("CAC_TOKEN")
        if not token:
            print(
                "error: no API token: pass --token or set CAC_TOKEN (`cac token` mints one)",
                file=sys.stderr,
            )
            return EXIT_USAGE

        try:
            with Client(api_url, token) as client:
                exit_status = command(client, args)
        except UsageError as error:
            print(f"error: {error}", file=sys.stderr)
            return EXIT_USAGE
        except ApiError as error:
            print(f"error: {describe_api_error(error)}", file=sys.stderr)
            return EXIT_FAILED
        except httpx.HTTPError as error:
            print(
                f"error: cannot reach the API at {api_url}: {error}; check that it runs"
                " (`cac dev` or `cac api`) or pass --api-url",
                file=sys.stderr,
            )
            return EXIT_FAILED
        return 0 if exit_status is None else exit_status

    return run


def describe_api_error(error: ApiError) -> str:
    """Describe an API error in one line, naming each invalid field of a 422."""
    detail = error.detail
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                location = item.get("loc") or ["request"]
                parts.append(f"{location[-1]}: {item.get('msg', item)}")
            else:
                parts.append(str(item))
        detail = "; ".join(parts)
    return f"the API rejected the request (HTTP {error.status_code}): {detail}"


def _balance(client: Client, args: argparse.Namespace) -> None:
    account = client.balance()
    if args.json:
        print_json(account.raw)
        return
    amounts = {"available": account.available, "held": account.held, "spent": account.spent}
    width = max(len(str(amount)) for amount in amounts.values())
    print(f"tenant     {account.tenant_id}")
    for name, amount in amounts.items():
        print(f"{name:<9}  {amount!s:>{width}}")


def _quotes(client: Client, args: argparse.Namespace) -> None:
    result = client.quotes(gpu_type=args.gpu_type, gpu_count=args.gpu_count, spot_ok=args.spot_ok)
    if args.json:
        print_json(result.raw)
        return
    print(f"{'provider':<10} {'region':<12} {'instance':<16} {'gpus':>7} {'spot':<4} "
          f"{'credits/h':>12} {'start s':>7}")
    for offer in result.offers:
        gpus = f"{offer.gpu_count}x{offer.gpu_type}" if offer.gpu_type else "cpu"
        print(
            f"{offer.provider:<10} {offer.region:<12} {offer.instance_type:<16} "
            f"{gpus:>7} {'yes' if offer.spot else 'no':<4} {offer.price_per_hour!s:>12} "
            f"{offer.start_seconds:>7}"
        )
    if result.failed_providers:
        print(f"no answer from: {', '.join(result.failed_providers)}")


def _statement(client: Client, args: argparse.Namespace) -> None:
    if not 1 <= args.limit <= 200:
        raise UsageError(f"--limit must be from 1 to 200, got {args.limit}")

    entries: list[dict[str, Any]] = []
    cursor = args.cursor
    while True:
        page = client.statement(limit=args.limit, cursor=cursor)
        entries.extend(page["entries"])
        cursor = page["nextCursor"]
        if cursor is None or not args.all:
            break

    if args.json:
        print_json({"entries": entries, "nextCursor": cursor})
        return
    if not entries:
        print("no transactions")
        return

    header = ["ID", "CREATED (UTC)", "TYPE", "JOB", "AMOUNT", "HELD", "BALANCE", "REASON"]
    rows = [header] + [_statement_row(entry) for entry in entries]
    print_table(rows, right_aligned={0, 4, 5, 6})
    if cursor is not None:
        print(f"\nOlder entries: run again with --cursor {cursor}, or with --all.")


def _statement_row(entry: dict[str, Any]) -> list[str]:
    return [
        str(entry["transactionId"]),
        _format_time(entry["createdAt"]),
        entry["type"],
        entry["jobId"] or "-",
        _signed(entry["amount"]),
        _signed(entry["heldChange"]),
        entry["balanceAfter"],
        _one_line(entry["reason"]),
    ]


def _grant(client: Client, args: argparse.Namespace) -> None:
    _check_amount(args.amount, "AMOUNT")
    key = args.key or f"cli-grant-{uuid.uuid4().hex}"
    posted = client.grant(
        args.tenant, args.amount, args.reason, idempotency_key=key, expires_at=args.expires_at
    )
    if args.json:
        print_json(posted)
        return
    expiry = f", expiring {posted['expiresAt']}" if posted.get("expiresAt") else ""
    action = "already granted" if posted["replayed"] else "granted"
    print(
        f"{action} {posted['amount']} credits to {posted['tenantId']}{expiry}"
        f" (transaction {posted['transactionId']}, key {posted['key']})"
    )


def _refund(client: Client, args: argparse.Namespace) -> None:
    if args.amount is not None:
        _check_amount(args.amount, "--amount")
    key = args.key or f"cli-refund-{uuid.uuid4().hex}"
    posted = client.refund(args.job_id, args.reason, idempotency_key=key, amount=args.amount)
    if args.json:
        print_json(posted)
        return
    action = "already refunded" if posted["replayed"] else "refunded"
    print(
        f"{action} {posted['amount']} credits of job {posted['jobId']} to"
        f" {posted['tenantId']} (transaction {posted['transactionId']}, key {posted['key']})"
    )


def _check_amount(amount: str, name: str) -> None:
    # The API checks the amount fully; this only catches what the SDK would raise on.
    try:
        parsed = Decimal(amount)
    except InvalidOperation:
        raise UsageError(f"{name} {amount!r} is not a decimal number such as 12.5") from None
    if not parsed.is_finite():
        raise UsageError(f"{name} must be a finite number, got {amount!r}")


def print_json(value: object) -> None:
    print(json.dumps(value, indent=2))


def print_table(rows: Sequence[Sequence[str]], *, right_aligned: set[int]) -> None:
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        cells = [
            cell.rjust(widths[column]) if column in right_aligned else cell.ljust(widths[column])
            for column, cell in enumerate(row)
        ]
        print("  ".join(cells).rstrip())


def _signed(amount: str) -> str:
    if amount.startswith("-") or amount.strip("0.") == "":
        return amount
    return f"+{amount}"


def _format_time(value: str) -> str:
    try:
        return datetime.fromisoformat(value).strftime("%Y-%m-%d %H:%M:%S")
    except ValueError:
        return value


def _one_line(text: str) -> str:
    # A reason is free text; a line break in it would break the table.
    return " ".join(text.split()) if text else "-"

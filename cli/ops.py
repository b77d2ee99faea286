"""`cac ops`: operator commands over the API.

`cac ops variance` prints the jobs whose providers charged more than they quoted, with the
platform's margin on each (scope billing:admin).
"""

import argparse

from cli.billing import UsageError, api_arguments, print_json, print_table, run_client_command
from sdk import Client


def add_ops_commands(commands: argparse._SubParsersAction) -> None:
    """Add `cac ops` and its actions to the `cac` parser's subcommands."""
    ops = commands.add_parser("ops", help="operator commands")
    actions = ops.add_subparsers(dest="ops_command", required=True, metavar="ACTION")

    variance = actions.add_parser(
        "variance",
        parents=[api_arguments()],
        help="print the jobs whose providers charged more than they quoted, largest variance"
        " first (scope billing:admin)",
    )
    variance.add_argument(
        "--since", metavar="ISO", help="only jobs charged at or after this time, with a timezone"
    )
    variance.add_argument("--provider", help="only jobs that ran on this provider")
    variance.add_argument(
        "--all", action="store_true", help="also list jobs charged at or below their quotes"
    )
    variance.add_argument(
        "--limit",
        type=int,
        default=100,
        metavar="N",
        help="most jobs listed, from 1 to 1000 (default: %(default)s)",
    )
    variance.set_defaults(handler=run_client_command(_variance))


def _variance(client: Client, args: argparse.Namespace) -> None:
    if not 1 <= args.limit <= 1000:
        raise UsageError(f"--limit {args.limit} is out of range; use 1 to 1000")

    report = client.variance(
        since=args.since, provider=args.provider, include_all=args.all, limit=args.limit
    )
    if args.json:
        print_json(report)
        return
    if not report["jobs"]:
        print("no job was charged more than its quote")
        return

    header = ["job", "tenant", "providers", "quoted", "charged", "variance", "billed", "margin"]
    rows = [header] + [
        [
            job["jobId"],
            job["tenantId"],
            ",".join(job["providers"]),
            job["quotedCost"],
            job["chargedCost"],
            job["variance"],
            job["billed"],
            job["margin"],
        ]
        for job in report["jobs"]
    ]
    rows.append(
        [
            "total",
            "",
            "",
            report["totalQuotedCost"],
            report["totalChargedCost"],
            report["totalVariance"],
            "",
            report["totalMargin"],
        ]
    )
    print_table(rows, right_aligned={3, 4, 5, 6, 7})

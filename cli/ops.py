"""`cac ops`: operator commands.

`cac ops variance` prints the jobs whose providers charged more than they quoted, with the
platform's margin on each (scope billing:admin).

`cac ops init` talks to Temporal, not to the API: it registers the job search attributes in
the configured namespace, which a new Temporal cluster needs before the first job starts.
"""

import argparse
import asyncio
import sys

from temporalio.client import Client as TemporalClient
from temporalio.client import WorkflowExecutionStatus
from temporalio.service import RPCError, RPCStatusCode

import ledger
from cli.billing import UsageError, api_arguments, print_json, print_table, run_client_command
from config import Settings
from ledger.money import micros_to_credits
from sdk import Client
from worker.client import connect_temporal
from worker.search_attributes import register_search_attributes
from workflows.search_attributes import JOB_SEARCH_ATTRIBUTES

CONNECT_TIMEOUT_SECONDS = 10.0


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

    init = actions.add_parser(
        "init",
        help="register the job search attributes in the Temporal namespace that"
        " CAC_TEMPORAL_ADDRESS and CAC_TEMPORAL_NAMESPACE name; safe to run again",
    )
    init.set_defaults(handler=_init)

    holds = actions.add_parser(
        "holds",
        help="list the ledger's open holds whose job's workflow has ended or is not found,"
        " read-only; exit 1 when there is any",
    )
    holds.set_defaults(handler=_holds)


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
    if len(report["jobs"]) == args.limit:
        print(
            f"showing the largest {args.limit} by variance; there may be more jobs:"
            " raise --limit, or narrow with --since or --provider"
        )


class _TemporalUnreachable(Exception):
    """The connection to Temporal failed or timed out; the message states how."""


def _init(_args: argparse.Namespace, settings: Settings) -> int:
    where = f"namespace {settings.temporal_namespace} at {settings.temporal_address}"
    try:
        added = asyncio.run(_register(settings))
    except _TemporalUnreachable as error:
        print(
            f"error: cannot reach Temporal at {settings.temporal_address}: {error};"
            " start it, or set CAC_TEMPORAL_ADDRESS",
            file=sys.stderr,
        )
        return 1
    except RPCError as error:
        print(f"error: Temporal rejected the request for {where}: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1

    if not added:
        print(f"all job search attributes were already registered in {where}")
        return 0
    types = {key.name: key.indexed_value_type.name for key in JOB_SEARCH_ATTRIBUTES}
    print(f"registered {len(added)} search attributes in {where}:")
    for name in added:
        print(f"  {name} ({types[name]})")
    return 0


async def _register(settings: Settings) -> list[str]:
    client = await _connect(settings)
    return await register_search_attributes(client, settings.temporal_namespace)


async def _connect(settings: Settings) -> TemporalClient:
    try:
        return await asyncio.wait_for(connect_temporal(settings), CONNECT_TIMEOUT_SECONDS)
    except TimeoutError:
        raise _TemporalUnreachable(f"timed out after {CONNECT_TIMEOUT_SECONDS:.0f} s") from None
    except RuntimeError as error:
        # The SDK raises RuntimeError when the connection fails, such as when it is refused.
        raise _TemporalUnreachable(str(error)) from None


def _holds(_args: argparse.Namespace, settings: Settings) -> int:
    try:
        stray = asyncio.run(_find_stray_holds(settings))
    except _TemporalUnreachable as error:
        print(
            f"error: cannot reach Temporal at {settings.temporal_address}: {error};"
            " start it, or set CAC_TEMPORAL_ADDRESS",
            file=sys.stderr,
        )
        return 1

    if not stray:
        print("every open hold belongs to a running job")
        return 0
    rows = [["job", "tenant", "held", "workflow"]]
    for hold, workflow_status in stray:
        rows.append(
            [
                hold.job_id,
                hold.tenant_id,
                f"{micros_to_credits(hold.remaining_micros)}",
                workflow_status,
            ]
        )
    print_table(rows, right_aligned={2})
    print(
        f"{len(stray)} open holds belong to jobs that are not running; see why each job's"
        " workflow ended without settling: temporal workflow show --workflow-id JOB"
    )
    return 1


async def _find_stray_holds(settings: Settings) -> list[tuple[ledger.HoldRecord, str]]:
    """Return each open hold whose job's workflow is not running, with that workflow's status."""
    client = await _connect(settings)

    engine = ledger.create_ledger_engine(settings.database_url)
    try:
        open_holds = await asyncio.to_thread(ledger.list_open_holds, engine)
    finally:
        engine.dispose()

    stray = []
    for hold in open_holds:
        try:
            description = await client.get_workflow_handle(hold.job_id).describe()
        except RPCError as error:
            if error.status != RPCStatusCode.NOT_FOUND:
                raise
            stray.append((hold, "not found"))
            continue
        if description.status != WorkflowExecutionStatus.RUNNING:
            status = description.status.name if description.status else "unknown"
            stray.append((hold, status))
    return stray

"""Ledger transactions per second against pgbench's TPC-B-like rate on the same server.

Usage:
    python bench/ledger.py [--seconds 3] [--clients 1,4,8,16] [--batch-size 50]

For each client count, the script runs pgbench's built-in TPC-B-like script and then the
ledger workload, each for `--seconds`, so both meet the same server in the same state of the
machine. The ledger workload is one process per client, each with a tenant of its own,
posting hold, capture and release in a loop through the public `ledger` functions. Each of
them is a committed ledger transaction with its balance checks. All processes'
captures credit the one platform revenue account, much as every pgbench transaction
updates the one branch row at scale 1. A third column posts the same workload through
`post_batch`, `--batch-size` operations per call.

The databases are new ones that the script creates on the server of `--admin-url` and drops
at the end. pgbench must be on PATH.
"""

import argparse
import os
import re
import secrets
import shutil
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

# This file is named ledger.py, so Python would import it for `import ledger`: put the
# repository first on the path instead of this directory.
REPOSITORY = Path(__file__).resolve().parent.parent
sys.path[0] = str(REPOSITORY)

import multiprocessing

import sqlalchemy as sa

import ledger
from ledger.db import normalize_database_url

DEFAULT_ADMIN_URL = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
GRANT_MICROS = 10**15
HOLD_MICROS = 1_000
CAPTURE_MICROS = 600
RELEASE_MICROS = HOLD_MICROS - CAPTURE_MICROS


@dataclass
class Point:
    """Rates measured at one client count, in transactions per second."""

    clients: int
    ledger: list[float]
    batched: list[float]
    pgbench: list[float]


def main() -> int:
    arguments = parse_arguments()
    pgbench = shutil.which("pgbench")
    if pgbench is None:
        print("pgbench not found on PATH; install the PostgreSQL client tools", file=sys.stderr)
        return 2

    admin_url = normalize_database_url(arguments.admin_url)
    suffix = secrets.token_hex(4)
    ledger_db = f"cac_bench_ledger_{suffix}"
    pgbench_db = f"cac_bench_pgbench_{suffix}"
    admin = sa.create_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=sa.NullPool)

    create_database(admin, ledger_db)
    create_database(admin, pgbench_db)
    try:
        ledger_url = admin_url.set(database=ledger_db).render_as_string(hide_password=False)
        ledger.upgrade(ledger_url)
        run_pgbench(pgbench, admin_url, pgbench_db, ["-i", "-q", "-s", str(arguments.scale)])
        describe_setup(admin, arguments)

        points = []
        for clients in arguments.clients:
            point = Point(clients, ledger=[], batched=[], pgbench=[])
            for _ in range(arguments.rounds):
                point.pgbench.append(
                    measure_pgbench(pgbench, admin_url, pgbench_db, clients, arguments.seconds)
                )
                point.ledger.append(
                    measure_ledger(ledger_url, clients, arguments.seconds, 1, arguments.pre_ping)
                )
                if arguments.batch_size > 1:
                    point.batched.append(
                        measure_ledger(
                            ledger_url,
                            clients,
                            arguments.seconds,
                            arguments.batch_size,
                            arguments.pre_ping,
                        )
                    )
            points.append(point)
            print_point(point, arguments.batch_size)
    finally:
        drop_database(admin, ledger_db)
        drop_database(admin, pgbench_db)
        admin.dispose()

    return 0


def parse_arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--seconds", type=float, default=3.0, help="duration of each measurement, in seconds"
    )
    parser.add_argument(
        "--clients",
        type=lambda text: [int(part) for part in text.split(",")],
        default=[1, 4, 8, 16],
        help="comma-separated client counts (processes for the ledger, pgbench -c/-j)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="measurements per client count; the table shows the median",
    )
    parser.add_argument(
        "--batch-size",
        type=int,
        default=50,
        help="operations per post_batch call in the batched column; 1 leaves it out",
    )
    parser.add_argument(
        "--scale", type=int, default=1, help="pgbench scale factor (-s) of its database"
    )
    parser.add_argument(
        "--pre-ping",
        action="store_true",
        help="let the ledger's connection pool ping each connection before use",
    )
    parser.add_argument(
        "--admin-url",
        default=os.environ.get("CAC_TEST_PG_URL", DEFAULT_ADMIN_URL),
        help="SQLAlchemy URL of a database on the server, used to create and drop the"
        " benchmark's databases (default: CAC_TEST_PG_URL or %(default)s)",
    )
    return parser.parse_args()


def create_database(admin: sa.Engine, name: str) -> None:
    with admin.connect() as connection:
        connection.exec_driver_sql(f'CREATE DATABASE "{name}"')


def drop_database(admin: sa.Engine, name: str) -> None:
    with admin.connect() as connection:
        connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def describe_setup(admin: sa.Engine, arguments: argparse.Namespace) -> None:
    with admin.connect() as connection:
        version = connection.exec_driver_sql("SHOW server_version").scalar_one()
        synchronous_commit = connection.exec_driver_sql("SHOW synchronous_commit").scalar_one()
    print(
        f"PostgreSQL {version}, synchronous_commit={synchronous_commit}, {os.cpu_count()} CPUs;"
        f" {arguments.seconds:g} s per measurement, {arguments.rounds} round(s),"
        f" pgbench scale {arguments.scale}, ledger pool pre-ping {arguments.pre_ping}"
    )
    header = f"{'clients':>7}  {'ledger tx/s':>11}  {'pgbench tps':>11}  {'ratio':>5}"
    if arguments.batch_size > 1:
        header += f"  {f'batched x{arguments.batch_size} tx/s':>20}"
    print(header)


def print_point(point: Point, batch_size: int) -> None:
    ledger_rate = statistics.median(point.ledger)
    pgbench_rate = statistics.median(point.pgbench)
    line = (
        f"{point.clients:>7}  {ledger_rate:>11.0f}  {pgbench_rate:>11.0f}"
        f"  {ledger_rate / pgbench_rate:>5.2f}"
    )
    if batch_size > 1:
        line += f"  {statistics.median(point.batched):>20.0f}"
    print(line, flush=True)


def run_pgbench(pgbench: str, admin_url: sa.URL, database: str, options: list[str]) -> str:
    command = [pgbench, "-h", admin_url.host or "127.0.0.1", "-p", str(admin_url.port or 5432)]
    if admin_url.username:
        command += ["-U", admin_url.username]
    environment = dict(os.environ)
    if admin_url.password:
        environment["PGPASSWORD"] = admin_url.password
    completed = subprocess.run(
        [*command, *options, database],
        capture_output=True,
        text=True,
        env=environment,
        check=True,
    )
    return completed.stdout


def measure_pgbench(
    pgbench: str, admin_url: sa.URL, database: str, clients: int, seconds: float
) -> float:
    duration = str(max(1, round(seconds)))
    output = run_pgbench(
        pgbench,
        admin_url,
        database,
        ["-c", str(clients), "-j", str(clients), "-T", duration, "-n"],
    )
    match = re.search(r"tps = ([0-9.]+)", output)
    if match is None:
        raise RuntimeError(f"no tps in the output of pgbench:\n{output}")
    return float(match.group(1))


def measure_ledger(
    database_url: str, clients: int, seconds: float, batch_size: int, pre_ping: bool
) -> float:
    """Run `clients` worker processes for `seconds` and return their transactions per second."""
    context = multiprocessing.get_context("spawn")
    ready = context.Barrier(clients + 1)
    start = context.Value("d", 0.0)
    results = context.Queue()
    run_id = secrets.token_hex(4)
    workers = [
        context.Process(
            target=run_worker,
            args=(
                database_url,
                f"{run_id}-{index}",
                batch_size,
                pre_ping,
                seconds,
                ready,
                start,
                results,
            ),
        )
        for index in range(clients)
    ]
    for worker in workers:
        worker.start()

    # Workers connect and grant first; the clock starts once all of them are ready.
    ready.wait(timeout=120)
    start.value = time.monotonic()
    ready.wait(timeout=120)

    total = sum(results.get(timeout=seconds + 120) for _ in workers)
    for worker in workers:
        worker.join(timeout=60)
    return total / seconds


def run_worker(
    database_url: str,
    tenant_id: str,
    batch_size: int,
    pre_ping: bool,
    seconds: float,
    ready,
    start,
    results,
) -> None:
    engine = ledger.create_ledger_engine(
        database_url, pool_size=1, max_overflow=0, pre_ping=pre_ping
    )
    ledger.grant(engine, tenant_id=tenant_id, amount_micros=GRANT_MICROS, key="bench-grant")
    ready.wait(timeout=120)
    ready.wait(timeout=120)
    deadline = start.value + seconds

    posted = 0
    job = 0
    while time.monotonic() < deadline:
        if batch_size == 1:
            job_id = f"{tenant_id}-{job}"
            ledger.hold(
                engine,
                tenant_id=tenant_id,
                job_id=job_id,
                amount_micros=HOLD_MICROS,
                key=f"{job_id}/hold",
            )
            ledger.capture(
                engine,
                tenant_id=tenant_id,
                job_id=job_id,
                amount_micros=CAPTURE_MICROS,
                key=f"{job_id}/capture",
            )
            ledger.release(
                engine,
                tenant_id=tenant_id,
                job_id=job_id,
                amount_micros=RELEASE_MICROS,
                key=f"{job_id}/release",
            )
            posted += 3
            job += 1
            continue

        operations = []
        while len(operations) + 3 <= batch_size:
            operations.extend(job_operations(tenant_id, f"{tenant_id}-{job}"))
            job += 1
        results_of_batch = ledger.post_batch(engine, operations)
        rejected = [r for r in results_of_batch if isinstance(r, ledger.LedgerError)]
        if rejected:
            raise RuntimeError(
                f"a benchmark batch was rejected, which it never should be: {rejected[0]}"
            )
        posted += len(operations)

    engine.dispose()
    results.put(posted)


def job_operations(tenant_id: str, job_id: str) -> list[ledger.Operation]:
    return [
        ledger.Operation(
            kind="hold",
            tenant_id=tenant_id,
            job_id=job_id,
            amount_micros=HOLD_MICROS,
            key=f"{job_id}/hold",
        ),
        ledger.Operation(
            kind="capture",
            tenant_id=tenant_id,
            job_id=job_id,
            amount_micros=CAPTURE_MICROS,
            key=f"{job_id}/capture",
        ),
        ledger.Operation(
            kind="release",
            tenant_id=tenant_id,
            job_id=job_id,
            amount_micros=RELEASE_MICROS,
            key=f"{job_id}/release",
        ),
    ]


if __name__ == "__main__":
    sys.exit(main())

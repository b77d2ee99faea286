"""`cac balance`, `cac statement`, `cac grant` and `cac refund` against a real API on loopback.

The API runs in a thread under uvicorn on a free port of 127.0.0.1, with a SQLite ledger.
"""

import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
import uvicorn
from sqlalchemy.engine import Engine

import ledger
from api.app import create_app
from api.auth import mint_token
from cli.main import main
from config import Settings
from tests.api.conftest import SECRET, UnusedTemporalClient
from tests.support.processes import free_port, wait_until


@dataclass(frozen=True)
class RunningApi:
    url: str
    engine: Engine


@pytest.fixture(scope="module")
def api(tmp_path_factory) -> Iterator[RunningApi]:
    """The API served by uvicorn in a thread, until the module's tests end."""
    settings = Settings(jwt_secret=SECRET, data_dir=tmp_path_factory.mktemp("cli-billing"))
    ledger.upgrade(settings.database_url)
    engine = ledger.create_ledger_engine(settings.database_url)
    app = create_app(settings, temporal_client=UnusedTemporalClient())
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="on")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started, timeout=10, what="the API to start")
        yield RunningApi(url=f"http://127.0.0.1:{port}", engine=engine)
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        engine.dispose()


def token(tenant: str, *scopes: str) -> str:
    return mint_token(SECRET, subject=tenant, scopes=list(scopes))


def run_cac(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.fixture
def tenant(api) -> str:
    """A tenant with 12.5 credits granted and one job: 4 held, 1.5 captured, the rest released."""
    name = f"tenant-{uuid.uuid4().hex[:8]}"
    ledger.grant(api.engine, tenant_id=name, amount_micros=12_500_000, key="g1", reason="signup")
    ledger.hold(api.engine, tenant_id=name, job_id=f"{name}-job", amount_micros=4_000_000, key="h1")
    ledger.capture(
        api.engine, tenant_id=name, job_id=f"{name}-job", amount_micros=1_500_000, key="c1"
    )
    ledger.release(
        api.engine, tenant_id=name, job_id=f"{name}-job", amount_micros=2_500_000, key="r1"
    )
    return name


def test_balance_prints_table(api, tenant, capsys):
    code, out, err = run_cac(
        capsys, "balance", "--api-url", api.url, "--token", token(tenant, "billing:read")
    )

    assert code == 0
    assert err == ""
    assert out.splitlines() == [
        f"tenant     {tenant}",
        "available  11.000000",
        "held        0.000000",
        "spent       1.500000",
    ]


def test_balance_reads_url_and_token_from_environment(api, tenant, capsys, monkeypatch):
    monkeypatch.setenv("CAC_API_URL", api.url)
    monkeypatch.setenv("CAC_TOKEN", token(tenant, "billing:read"))

    code, out, _ = run_cac(capsys, "balance", "--json")

    assert code == 0
    assert json.loads(out) == {
        "tenantId": tenant,
        "available": "11.000000",
        "held": "0.000000",
        "spent": "1.500000",
    }


def test_balance_without_billing_scope_fails(api, tenant, capsys):
    code, out, err = run_cac(
        capsys, "balance", "--api-url", api.url, "--token", token(tenant, "jobs:read")
    )

    assert code == 1
    assert out == ""
    assert err == (
        "error: the API rejected the request (HTTP 403): the token lacks the required scope"
        " billing:read\n"
    )


def test_balance_without_token_fails(api, capsys, monkeypatch):
    monkeypatch.delenv("CAC_TOKEN", raising=False)

    code, _, err = run_cac(capsys, "balance", "--api-url", api.url)

    assert code == 2
    assert err == "error: no API token: pass --token or set CAC_TOKEN (`cac token` mints one)\n"


def test_balance_with_api_down_fails(capsys):
    url = f"http://127.0.0.1:{free_port()}"

    code, _, err = run_cac(capsys, "balance", "--api-url", url, "--token", "t")

    assert code == 1
    assert err.startswith(f"error: cannot reach the API at {url}: ")
    assert err.endswith("check that it runs (`cac dev` or `cac api`) or pass --api-url\n")


def test_statement_prints_table_newest_first(api, tenant, capsys):
    code, out, _ = run_cac(
        capsys, "statement", "--api-url", api.url, "--token", token(tenant, "billing:read")
    )

    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == [
        "ID",
        "CREATED",
        "(UTC)",
        "TYPE",
        "JOB",
        "AMOUNT",
        "HELD",
        "BALANCE",
        "REASON",
    ]
    rows = [line.split()[3:] for line in lines[1:]]
    job = f"{tenant}-job"
    assert rows == [
        ["release", job, "+2.500000", "-2.500000", "11.000000", "-"],
        ["capture", job, "0.000000", "-1.500000", "8.500000", "-"],
        ["hold", job, "-4.000000", "+4.000000", "8.500000", "-"],
        ["grant", "-", "+12.500000", "0.000000", "12.500000", "signup"],
    ]
    assert len(lines) == 5


def test_statement_limit_prints_cursor_of_next_page(api, tenant, capsys):
    reader = token(tenant, "billing:read")

    code, out, _ = run_cac(
        capsys, "statement", "--api-url", api.url, "--token", reader, "--limit", "3"
    )
    cursor = out.splitlines()[-1].split("--cursor ")[1].split(",")[0]
    next_code, next_out, _ = run_cac(
        capsys, "statement", "--api-url", api.url, "--token", reader, "--cursor", cursor
    )

    assert code == 0
    assert len(out.splitlines()) == 6
    assert out.splitlines()[-1] == (
        f"Older entries: run again with --cursor {cursor}, or with --all."
    )
    assert next_code == 0
    assert [line.split()[3] for line in next_out.splitlines()[1:]] == ["grant"]


def test_statement_all_reads_every_page(api, tenant, capsys):
    code, out, _ = run_cac(
        capsys,
        "statement",
        "--api-url",
        api.url,
        "--token",
        token(tenant, "billing:read"),
        "--all",
        "--limit",
        "1",
        "--json",
    )

    statement = json.loads(out)
    assert code == 0
    assert [entry["type"] for entry in statement["entries"]] == [
        "release",
        "capture",
        "hold",
        "grant",
    ]
    assert [entry["balanceAfter"] for entry in statement["entries"]] == [
        "11.000000",
        "8.500000",
        "8.500000",
        "12.500000",
    ]
    assert statement["nextCursor"] is None


def test_statement_of_new_tenant_prints_no_transactions(api, capsys):
    code, out, _ = run_cac(
        capsys, "statement", "--api-url", api.url, "--token", token("nobody", "billing:read")
    )

    assert code == 0
    assert out == "no transactions\n"


@pytest.mark.parametrize("limit", ["0", "201"])
def test_statement_with_limit_out_of_range_fails(api, capsys, limit):
    code, _, err = run_cac(
        capsys, "statement", "--api-url", api.url, "--token", "t", "--limit", limit
    )

    assert code == 2
    assert err == f"error: --limit must be from 1 to 200, got {limit}\n"


def test_grant_then_retry_with_same_key_grants_once(api, capsys):
    tenant = f"tenant-{uuid.uuid4().hex[:8]}"
    admin = token("operator", "billing:admin")
    args = ["grant", tenant, "7.25", "--reason", "promo", "--key", "promo-1"]

    code, out, _ = run_cac(capsys, *args, "--api-url", api.url, "--token", admin)
    retry_code, retry_out, _ = run_cac(capsys, *args, "--api-url", api.url, "--token", admin)

    transaction_id = out.split("(transaction ")[1].split(",")[0]
    assert code == 0
    assert out == (
        f"granted 7.250000 credits to {tenant} (transaction {transaction_id}, key promo-1)\n"
    )
    assert retry_code == 0
    assert retry_out == f"already {out}"
    assert ledger.get_balances(api.engine, tenant).available_micros == 7_250_000


def test_grant_with_expiry_prints_it(api, capsys):
    tenant = f"tenant-{uuid.uuid4().hex[:8]}"

    code, out, _ = run_cac(
        capsys,
        "grant",
        tenant,
        "1",
        "--reason",
        "trial",
        "--expires-at",
        "2040-01-01T00:00:00Z",
        "--api-url",
        api.url,
        "--token",
        token("operator", "billing:admin"),
        "--json",
    )

    posted = json.loads(out)
    assert code == 0
    assert posted["expiresAt"] == "2040-01-01T00:00:00Z"
    assert posted["key"].startswith("cli-grant-")
    assert posted["replayed"] is False


def test_grant_with_invalid_amount_fails_before_request(capsys):
    code, _, err = run_cac(
        capsys,
        "grant",
        "acme",
        "lots",
        "--reason",
        "x",
        "--api-url",
        "http://127.0.0.1:9",
        "--token",
        "t",
    )

    assert code == 2
    assert err == "error: AMOUNT 'lots' is not a decimal number such as 12.5\n"


def test_grant_rejected_by_api_names_field(api, capsys):
    code, _, err = run_cac(
        capsys,
        "grant",
        "acme",
        "0.1234567",
        "--reason",
        "x",
        "--api-url",
        api.url,
        "--token",
        token("operator", "billing:admin"),
    )

    assert code == 1
    assert err == (
        "error: the API rejected the request (HTTP 422): amount: must have at most 6 decimal"
        " places\n"
    )


def test_refund_without_amount_refunds_the_rest(api, tenant, capsys):
    code, out, _ = run_cac(
        capsys,
        "refund",
        f"{tenant}-job",
        "--reason",
        "late start",
        "--key",
        "refund-1",
        "--api-url",
        api.url,
        "--token",
        token("operator", "billing:admin"),
    )

    transaction_id = out.split("(transaction ")[1].split(",")[0]
    assert code == 0
    assert out == (
        f"refunded 1.500000 credits of job {tenant}-job to {tenant}"
        f" (transaction {transaction_id}, key refund-1)\n"
    )
    assert ledger.get_balances(api.engine, tenant).available_micros == 12_500_000


def test_refund_above_refundable_fails(api, tenant, capsys):
    code, _, err = run_cac(
        capsys,
        "refund",
        f"{tenant}-job",
        "--amount",
        "2",
        "--reason",
        "x",
        "--api-url",
        api.url,
        "--token",
        token("operator", "billing:admin"),
    )

    assert code == 1
    assert err == (
        "error: the API rejected the request (HTTP 422): amount: exceeds what job"
        f" {tenant}-job has left to refund: 1.500000 credits\n"
    )

"""`cac ledger verify` on fresh PostgreSQL databases and SQLite files."""

import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

import ledger
from cli.ledger_verify import create_read_only_engine
from cli.main import main
from tests.conftest import fresh_pg_database

TENANT = "acme"


def post_history(database_url: str) -> None:
    """Grant, hold, capture, release and refund for one job of `TENANT`."""
    engine = ledger.create_ledger_engine(database_url)
    try:
        ledger.grant(engine, tenant_id=TENANT, amount_micros=10_000_000, key="g")
        ledger.hold(engine, tenant_id=TENANT, job_id="job-1", amount_micros=4_000_000, key="h")
        ledger.capture(engine, tenant_id=TENANT, job_id="job-1", amount_micros=3_000_000, key="c")
        ledger.release(engine, tenant_id=TENANT, job_id="job-1", amount_micros=1_000_000, key="r")
        ledger.refund(
            engine, tenant_id=TENANT, job_id="job-1", amount_micros=500_000, key="f", reason="x"
        )
    finally:
        engine.dispose()


def expected_report(database_url: str) -> list[str]:
    engine = ledger.create_ledger_engine(database_url)
    try:
        return ledger.verify_ledger(engine).lines()
    finally:
        engine.dispose()


def corrupt_first_available_posting(database_url: str) -> None:
    """Add one micro-credit to the amount of the first posting on the tenant's available account.

    On PostgreSQL the replica role turns off the trigger that rejects unbalanced postings.
    """
    engine = ledger.create_ledger_engine(database_url)
    try:
        with engine.begin() as connection:
            if connection.dialect.name == "postgresql":
                connection.execute(sa.text("SET LOCAL session_replication_role = replica"))
            connection.execute(
                sa.text(
                    "UPDATE postings SET amount = amount + 1 WHERE id = ("
                    " SELECT p.id FROM postings p JOIN accounts a ON a.id = p.account_id"
                    " WHERE a.tenant_id = :tenant AND a.name = 'available'"
                    " ORDER BY p.id LIMIT 1)"
                ),
                {"tenant": TENANT},
            )
    finally:
        engine.dispose()


def run_verify(capsys, monkeypatch, database_url: str) -> tuple[int, list[str], str]:
    monkeypatch.setenv("DATABASE_URL", database_url)
    code = main(["ledger", "verify"])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


@pytest.fixture
def pg_ledger_url() -> Iterator[str]:
    with fresh_pg_database() as url:
        ledger.upgrade(url)
        post_history(url)
        yield url


@pytest.fixture
def sqlite_ledger_url(tmp_path) -> str:
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    ledger.upgrade(url)
    post_history(url)
    return url


def test_verify_clean_postgres_ledger_exits_0(pg_ledger_url, capsys, monkeypatch):
    code, lines, err = run_verify(capsys, monkeypatch, pg_ledger_url)

    assert code == 0
    assert err == ""
    assert lines[0].startswith("verifying the ledger at postgresql+psycopg://")
    assert lines[1:] == expected_report(pg_ledger_url)
    assert lines[1] == "ok   each account's balance equals the sum of its postings (4 accounts)"
    assert lines[-1] == "ledger consistent: all 14 checks passed"


def test_verify_prints_every_check_with_its_count(pg_ledger_url, capsys, monkeypatch):
    _, lines, _ = run_verify(capsys, monkeypatch, pg_ledger_url)

    assert lines[1:-1] == [
        "ok   each account's balance equals the sum of its postings (4 accounts)",
        "ok   each posting's balance_after is the previous one plus its amount (10 postings)",
        "ok   each transaction's postings sum to zero (5 transactions)",
        (
            "ok   each transaction debits one account and credits another by its amount"
            " (5 transactions)"
        ),
        "ok   no account that disallows a negative balance is below zero (3 accounts)",
        "ok   each hold is captured and released at most once in total (1 holds)",
        "ok   each job is refunded at most what was captured from it (1 holds)",
        "ok   each tenant's held balance equals what its holds have left (1 tenants)",
        "ok   each tenant's available balance equals the credits remaining in its lots (1 tenants)",
        (
            "ok   each lot's credits are remaining, expired, held or spent, and expired lots"
            " keep nothing (2 lots)"
        ),
        "ok   each hold's parts add up to what it drew, released and captured (1 holds)",
        (
            "ok   platform funding is minus all grants, revenue is captured minus refunded,"
            " expired is what lots lost to expiry (3 accounts)"
        ),
        "ok   each provider's cost and payable accounts equal minus and plus its booked"
        " charges (0 providers)",
        "ok   all balances together sum to zero (4 accounts)",
    ]


def test_verify_corrupted_postgres_posting_exits_1_naming_account(
    pg_ledger_url, capsys, monkeypatch
):
    corrupt_first_available_posting(pg_ledger_url)

    code, lines, _ = run_verify(capsys, monkeypatch, pg_ledger_url)

    assert code == 1
    assert lines[1:] == expected_report(pg_ledger_url)
    assert "FAIL each account's balance equals the sum of its postings (4 accounts)" in lines
    assert (
        f"       account {TENANT}/available: balance is 7500000, expected 7500001 (difference -1)"
    ) in lines
    assert lines[-1].startswith("ledger inconsistent: ")


def test_verify_engine_rejects_writes_on_postgres(pg_ledger_url):
    engine = create_read_only_engine(pg_ledger_url)

    with (
        pytest.raises(sa.exc.InternalError, match="read-only transaction"),
        engine.begin() as connection,
    ):
        connection.execute(sa.text("UPDATE postings SET amount = amount + 1"))
    engine.dispose()


def test_verify_engine_rejects_writes_on_sqlite(sqlite_ledger_url):
    engine = create_read_only_engine(sqlite_ledger_url)

    with (
        pytest.raises(sa.exc.OperationalError, match="readonly database"),
        engine.begin() as connection,
    ):
        connection.execute(sa.text("UPDATE postings SET amount = amount + 1"))
    engine.dispose()


def test_verify_clean_sqlite_ledger_leaves_file_unchanged(
    sqlite_ledger_url, tmp_path, capsys, monkeypatch
):
    database = tmp_path / "ledger.db"
    before = hashlib.sha256(database.read_bytes()).hexdigest()

    code, lines, _ = run_verify(capsys, monkeypatch, sqlite_ledger_url)

    assert code == 0
    assert lines[0] == f"verifying the ledger at {sqlite_ledger_url}"
    assert lines[-1] == "ledger consistent: all 14 checks passed"
    assert hashlib.sha256(database.read_bytes()).hexdigest() == before


def test_verify_corrupted_sqlite_posting_exits_1_naming_account(
    sqlite_ledger_url, capsys, monkeypatch
):
    corrupt_first_available_posting(sqlite_ledger_url)

    code, lines, _ = run_verify(capsys, monkeypatch, sqlite_ledger_url)

    assert code == 1
    assert (
        f"       account {TENANT}/available: balance is 7500000, expected 7500001 (difference -1)"
    ) in lines


def test_verify_missing_sqlite_file_exits_1(tmp_path, capsys, monkeypatch):
    missing = tmp_path / "missing.db"

    code, _, err = run_verify(capsys, monkeypatch, f"sqlite:///{missing}")

    assert code == 1
    assert err == f"error: no ledger database at {missing}; check DATABASE_URL or CAC_DATA_DIR\n"
    assert not missing.exists()


def test_verify_database_without_schema_exits_1(capsys, monkeypatch):
    with fresh_pg_database() as url:
        code, _, err = run_verify(capsys, monkeypatch, url)

    assert code == 1
    assert err.startswith("error: cannot read the ledger at postgresql+psycopg://")
    assert 'relation "accounts" does not exist' in err


def test_verify_sqlite_path_with_special_characters(tmp_path, capsys, monkeypatch):
    directory = tmp_path / "a b%#?"
    directory.mkdir()
    url = f"sqlite:///{Path(directory) / 'ledger.db'}"
    ledger.upgrade(url)

    code, lines, _ = run_verify(capsys, monkeypatch, url)

    assert code == 0
    assert lines[-1] == "ledger consistent: all 14 checks passed"

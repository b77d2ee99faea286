"""`cac ops variance` against a real API on loopback, with a SQLite ledger of its own."""

import json
from collections.abc import Iterator

import pytest

import ledger
from ledger import ProviderCharge
from tests.cli.test_billing_commands import RunningApi, run_cac, token
from tests.cli.test_billing_commands import api as api  # noqa: F401 (module fixture)

ADMIN_TOKEN = token("operator", "billing:admin")


@pytest.fixture(scope="module")
def charged(api) -> Iterator[RunningApi]:  # noqa: F811
    """Two settled jobs of tenant acme: one overcharged by 0.75 credits, one charged its quote."""
    ledger.grant(api.engine, tenant_id="acme", amount_micros=50_000_000, key="g")
    for job_id, charged_micros in [("job-drift", 2_750_000), ("job-exact", 2_000_000)]:
        ledger.hold(api.engine, tenant_id="acme", job_id=job_id, amount_micros=5_000_000, key=f"{job_id}/h")
        ledger.capture(api.engine, tenant_id="acme", job_id=job_id, amount_micros=2_000_000, key=f"{job_id}/c")
        ledger.record_provider_charge(
            api.engine,
            ProviderCharge(
                job_id=job_id,
                tenant_id="acme",
                attempt=1,
                provider="runpod",
                instance_id=f"pod-{job_id}",
                billable_seconds=3600,
                quoted_price_per_hour_micros=2_000_000,
                quoted_cost_micros=2_000_000,
                charged_price_per_hour_micros=charged_micros,
                charged_cost_micros=charged_micros,
                reported=True,
            ),
        )
    yield api


def test_ops_variance_prints_overcharged_jobs(charged, capsys):
    code, out, err = run_cac(
        capsys, "ops", "variance", "--api-url", charged.url, "--token", ADMIN_TOKEN
    )

    assert (code, err) == (0, "")
    assert out.splitlines() == [
        "job        tenant  providers    quoted   charged  variance    billed     margin",
        "job-drift  acme    runpod     2.000000  2.750000  0.750000  2.000000  -0.750000",
        "total                         2.000000  2.750000  0.750000            -0.750000",
    ]


def test_ops_variance_all_json(charged, capsys):
    code, out, _ = run_cac(
        capsys, "ops", "variance", "--all", "--json", "--api-url", charged.url, "--token", ADMIN_TOKEN
    )

    assert code == 0
    report = json.loads(out)
    assert [job["jobId"] for job in report["jobs"]] == ["job-drift", "job-exact"]
    assert report["totalMargin"] == "-0.750000"


def test_ops_variance_without_admin_scope_fails(charged, capsys):
    code, _, err = run_cac(
        capsys,
        "ops",
        "variance",
        "--api-url",
        charged.url,
        "--token",
        token("acme", "billing:read"),
    )

    assert code == 1
    assert "403" in err
    assert "billing:admin" in err


def test_ops_variance_limit_out_of_range_fails(charged, capsys):
    code, _, err = run_cac(
        capsys, "ops", "variance", "--limit", "0", "--api-url", charged.url, "--token", ADMIN_TOKEN
    )

    assert code == 2
    assert err == "error: --limit 0 is out of range; use 1 to 1000\n"


def test_ops_variance_at_limit_says_more_may_exist(charged, capsys):
    code, out, _ = run_cac(
        capsys,
        "ops", "variance", "--all", "--limit", "1", "--api-url", charged.url, "--token", ADMIN_TOKEN,
    )

    assert code == 0
    assert out.splitlines()[-1] == (
        "showing the largest 1 by variance; there may be more jobs: raise --limit, or narrow"
        " with --since or --provider"
    )

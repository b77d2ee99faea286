import threading
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

from ledger import (
    HoldExceeded,
    InsufficientFunds,
    PlatformBalances,
    TenantBalances,
    capture,
    get_balances,
    get_hold,
    get_platform_balances,
    grant,
    hold,
    refund,
    release,
)


def run_at_once(count: int, task: Callable[[int], object]) -> list[object]:
    """Run task(0) ... task(count - 1) in as many threads, released together by a barrier.

    Returns what each call returned, or the exception it raised.
    """
    barrier = threading.Barrier(count)

    def run(index: int) -> object:
        barrier.wait(timeout=10)
        try:
            return task(index)
        except Exception as error:  # noqa: BLE001 - the test inspects every outcome
            return error

    with ThreadPoolExecutor(max_workers=count) as executor:
        return list(executor.map(run, range(count)))


def outcome_counts(outcomes: list[object]) -> Counter[str]:
    return Counter(type(outcome).__name__ for outcome in outcomes)


def test_fifty_holds_covering_ten_succeed_ten_times(engine, ledger_inconsistencies):
    grant(engine, tenant_id="acme", amount_micros=10 * 7_000, key="g")

    outcomes = run_at_once(
        50,
        lambda index: hold(
            engine,
            tenant_id="acme",
            job_id=f"job-{index}",
            amount_micros=7_000,
            key=f"job-{index}/hold",
        ),
    )

    assert outcome_counts(outcomes) == {"PostedTransaction": 10, "InsufficientFunds": 40}
    assert get_balances(engine, "acme") == TenantBalances(
        available_micros=0, held_micros=70_000, spent_micros=0
    )
    assert ledger_inconsistencies(engine) == []


def test_concurrent_same_key_posts_once(engine, ledger_inconsistencies):
    outcomes = run_at_once(
        20, lambda _: grant(engine, tenant_id="acme", amount_micros=500, key="welcome")
    )

    assert outcome_counts(outcomes) == {"PostedTransaction": 20}
    assert sum(1 for outcome in outcomes if not outcome.replayed) == 1
    assert len({outcome.transaction_id for outcome in outcomes}) == 1
    assert get_balances(engine, "acme").available_micros == 500
    assert get_platform_balances(engine).funding_micros == -500
    assert ledger_inconsistencies(engine) == []


def test_concurrent_captures_stop_at_hold(engine, ledger_inconsistencies):
    grant(engine, tenant_id="acme", amount_micros=1_000, key="g")
    hold(engine, tenant_id="acme", job_id="j", amount_micros=1_000, key="h")

    outcomes = run_at_once(
        25,
        lambda index: capture(
            engine, tenant_id="acme", job_id="j", amount_micros=100, key=f"c{index}"
        ),
    )

    assert outcome_counts(outcomes) == {"PostedTransaction": 10, "HoldExceeded": 15}
    assert all(
        isinstance(outcome, HoldExceeded) for outcome in outcomes if isinstance(outcome, Exception)
    )
    assert get_hold(engine, "j").captured_micros == 1_000
    assert get_platform_balances(engine).revenue_micros == 1_000
    assert ledger_inconsistencies(engine) == []


def test_concurrent_mixed_operations_stay_consistent(engine, ledger_inconsistencies):
    # Two tenants start with ten held jobs each. Threads then grant, hold, capture and release
    # at once, so that account rows, funding and revenue above all, are contended in every order.
    for tenant_id in ("acme", "globex"):
        grant(engine, tenant_id=tenant_id, amount_micros=1_000, key="g")
        for job in range(10):
            job_id = f"{tenant_id}-{job}"
            hold(engine, tenant_id=tenant_id, job_id=job_id, amount_micros=50, key=job_id)

    def operate(index: int) -> object:
        tenant_id = ("acme", "globex")[index // 4 % 2]
        job_id = f"{tenant_id}-{index % 10}"
        match index % 4:
            case 0 | 1:
                return capture(
                    engine, tenant_id=tenant_id, job_id=job_id, amount_micros=30, key=f"c{index}"
                )
            case 2:
                return release(
                    engine, tenant_id=tenant_id, job_id=job_id, amount_micros=20, key=f"r{index}"
                )
            case _:
                grant(engine, tenant_id=tenant_id, amount_micros=10, key=f"g{index}")
                return hold(
                    engine,
                    tenant_id=tenant_id,
                    job_id=f"{tenant_id}-new-{index}",
                    amount_micros=10,
                    key=f"h{index}",
                )

    outcomes = run_at_once(40, operate)

    unexpected = [
        outcome
        for outcome in outcomes
        if isinstance(outcome, Exception)
        and not isinstance(outcome, HoldExceeded | InsufficientFunds)
    ]
    assert unexpected == []
    assert ledger_inconsistencies(engine) == []
    acme = get_balances(engine, "acme")
    globex = get_balances(engine, "globex")
    assert acme.available_micros + acme.held_micros + acme.spent_micros == 1_050
    assert globex.available_micros + globex.held_micros + globex.spent_micros == 1_050
    assert get_platform_balances(engine) == PlatformBalances(
        funding_micros=-2_100, revenue_micros=acme.spent_micros + globex.spent_micros
    )


def test_concurrent_same_capture_key_captures_once(engine, ledger_inconsistencies):
    grant(engine, tenant_id="acme", amount_micros=1_000, key="g")
    hold(engine, tenant_id="acme", job_id="j", amount_micros=1_000, key="h")

    outcomes = run_at_once(
        20,
        lambda _: capture(engine, tenant_id="acme", job_id="j", amount_micros=600, key="j/capture"),
    )

    assert outcome_counts(outcomes) == {"PostedTransaction": 20}
    assert sum(1 for outcome in outcomes if not outcome.replayed) == 1
    assert len({outcome.transaction_id for outcome in outcomes}) == 1
    assert get_hold(engine, "j").captured_micros == 600
    assert get_platform_balances(engine).revenue_micros == 600
    assert ledger_inconsistencies(engine) == []


def test_concurrent_refunds_stop_at_captured(engine, ledger_inconsistencies):
    grant(engine, tenant_id="acme", amount_micros=1_000, key="g")
    hold(engine, tenant_id="acme", job_id="j", amount_micros=1_000, key="h")
    capture(engine, tenant_id="acme", job_id="j", amount_micros=700, key="c")

    outcomes = run_at_once(
        30,
        lambda index: refund(
            engine,
            tenant_id="acme",
            job_id="j",
            amount_micros=100,
            key=f"rf{index}",
            reason="outage",
        ),
    )

    assert outcome_counts(outcomes) == {"PostedTransaction": 7, "RefundExceeded": 23}
    assert get_hold(engine, "j").refunded_micros == 700
    assert get_balances(engine, "acme") == TenantBalances(
        available_micros=700, held_micros=300, spent_micros=0
    )
    assert get_platform_balances(engine).revenue_micros == 0
    assert ledger_inconsistencies(engine) == []


def test_concurrent_holds_captures_refunds_on_one_tenant(engine, ledger_inconsistencies):
    # One tenant with 2_000 granted, 400 of it already captured from four old jobs. Forty
    # threads each hold 100 for a job of their own, capture 60, try to capture 60 more, and
    # release the 40 left. Twenty more threads refund 50 each from the old jobs.
    grant(engine, tenant_id="acme", amount_micros=2_000, key="g")
    for job in range(4):
        hold(engine, tenant_id="acme", job_id=f"old-{job}", amount_micros=100, key=f"old-{job}/h")
        capture(
            engine, tenant_id="acme", job_id=f"old-{job}", amount_micros=100, key=f"old-{job}/c"
        )

    def operate(index: int) -> object:
        if index >= 40:
            return refund(
                engine,
                tenant_id="acme",
                job_id=f"old-{index % 4}",
                amount_micros=50,
                key=f"refund-{index}",
                reason="outage",
            )
        job_id = f"new-{index}"
        hold(engine, tenant_id="acme", job_id=job_id, amount_micros=100, key=f"{job_id}/h")
        capture(engine, tenant_id="acme", job_id=job_id, amount_micros=60, key=f"{job_id}/c")
        try:
            capture(engine, tenant_id="acme", job_id=job_id, amount_micros=60, key=f"{job_id}/c2")
        except HoldExceeded:
            pass
        else:
            raise AssertionError(f"job {job_id} was captured beyond its hold")
        return release(engine, tenant_id="acme", job_id=job_id, amount_micros=40, key=f"{job_id}/r")

    outcomes = run_at_once(60, operate)

    job_counts = outcome_counts(outcomes[:40])
    refund_counts = outcome_counts(outcomes[40:])
    assert set(job_counts) <= {"PostedTransaction", "InsufficientFunds"}
    assert refund_counts == {"PostedTransaction": 8, "RefundExceeded": 12}
    for job in range(4):
        assert get_hold(engine, f"old-{job}").refunded_micros == 100
    settled_jobs = job_counts["PostedTransaction"]
    assert settled_jobs >= 16
    assert get_balances(engine, "acme") == TenantBalances(
        available_micros=2_000 - 60 * settled_jobs, held_micros=0, spent_micros=60 * settled_jobs
    )
    assert get_platform_balances(engine).revenue_micros == 60 * settled_jobs
    assert ledger_inconsistencies(engine) == []

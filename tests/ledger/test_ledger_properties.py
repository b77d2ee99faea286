"""Property tests: random operations, alone and from concurrent threads, against a model.

Grants (some expiring), holds, captures, releases, refunds, expiries and replays of earlier
requests are drawn by hypothesis. The sequential test predicts every outcome and balance with
`LedgerModel` before the ledger returns it. The concurrent test cannot know the interleaving in
advance, so it replays each tenant's statement through the model afterwards: every posted
transaction must have been allowed when it was posted, and the model's balances must equal
the ledger's.
"""

import threading
from dataclasses import dataclass
from datetime import UTC, datetime

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import (
    HoldExceeded,
    IdempotencyConflict,
    InsufficientFunds,
    LedgerError,
    PlatformBalances,
    PostedTransaction,
    RefundExceeded,
    TenantBalances,
    capture,
    expire_grants,
    get_balances,
    get_hold,
    get_platform_balances,
    get_statement,
    grant,
    hold,
    refund,
    release,
    verify_ledger,
)
from tests.ledger.conftest import empty_ledger
from tests.ledger.ledger_model import PAST, LedgerModel, Rejection

TENANTS = ("acme", "globex")
# Most requests go to one tenant, so that they meet each other's lots and holds. The other
# tenant brings cross-tenant cases, such as a capture of another tenant's hold.
TENANT_CHOICES = ("acme", "acme", "acme", "globex")
EXPIRIES = (None, PAST, datetime(2100, 1, 1, tzinfo=UTC), datetime(2200, 1, 1, tzinfo=UTC))
SWEEPS = (
    datetime(2050, 1, 1, tzinfo=UTC),
    datetime(2150, 1, 1, tzinfo=UTC),
    datetime(2250, 1, 1, tzinfo=UTC),
)
REFUND_REASON = "goodwill"


@dataclass(frozen=True)
class Request:
    kind: str
    tenant_id: str
    amount: int
    job_id: str | None = None
    expires_at: datetime | None = None

    @property
    def reason(self) -> str:
        return REFUND_REASON if self.kind == "refund" else ""


def post(engine, request: Request, key: str) -> PostedTransaction | LedgerError:
    """Send a request to the ledger and return the result or the error it raised."""
    try:
        if request.kind == "grant":
            return grant(
                engine,
                tenant_id=request.tenant_id,
                amount_micros=request.amount,
                key=key,
                expires_at=request.expires_at,
            )
        operation = {"hold": hold, "capture": capture, "release": release, "refund": refund}
        arguments = {
            "tenant_id": request.tenant_id,
            "job_id": request.job_id,
            "amount_micros": request.amount,
            "key": key,
        }
        if request.kind == "refund":
            arguments["reason"] = REFUND_REASON
        return operation[request.kind](engine, **arguments)
    except LedgerError as error:
        return error


@dataclass(frozen=True)
class JobIntent:
    """A hold, capture, release or refund, resolved against the model when it is sent.

    A hold starts a new job (of tenant `TENANTS[pick % 2]`) unless `pick % 5` is 4, when it
    holds an existing job again. A capture, release or refund goes to one of the held
    jobs, chosen by `pick`. `share` is a percentage of the tenant's spendable credits (hold),
    the hold's unsettled amount (capture, release) or its refundable amount (refund); above
    100 it asks for more than allowed. `other_tenant` sends the request as the tenant that
    does not own the job. Steps that follow the state reach far more of the rules than random
    jobs and amounts, which mostly miss.
    """

    kind: str
    pick: int
    share: int
    other_tenant: bool


job_intents = st.builds(
    JobIntent,
    kind=st.sampled_from(("hold", "capture", "capture", "release", "refund")),
    pick=st.integers(min_value=0, max_value=1000),
    share=st.integers(min_value=1, max_value=120),
    other_tenant=st.sampled_from((False,) * 9 + (True,)),
)
grant_requests = st.builds(
    Request,
    kind=st.just("grant"),
    tenant_id=st.sampled_from(TENANT_CHOICES),
    amount=st.integers(min_value=1, max_value=200),
    expires_at=st.sampled_from(EXPIRIES),
)
sweeps = st.tuples(st.just("expire"), st.sampled_from(SWEEPS))
replays = st.tuples(st.just("replay"), st.integers(min_value=0, max_value=10_000), st.booleans())
steps = st.lists(
    st.one_of(grant_requests, job_intents, job_intents, job_intents, sweeps, replays),
    # Hypothesis favours short lists, which rarely get as far as an expiry of held credits.
    min_size=20,
    max_size=40,
)


@pytest.fixture(scope="session")
def backend_engines(pg_engine, sqlite_engine):
    return {"plpgsql": pg_engine, "sqlite": sqlite_engine}


class SequentialRun:
    """Sends steps one at a time and asserts each outcome against the model's prediction."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.model = LedgerModel()
        self.sent: list[tuple[Request, str]] = []
        self.posted_keys: dict[tuple[str, str], tuple[Request, int]] = {}

    def run(self, step) -> None:
        if isinstance(step, Request):
            self.send(step, f"k{len(self.sent)}")
        elif isinstance(step, JobIntent):
            self.send(self.resolve(step), f"k{len(self.sent)}")
        elif step[0] == "expire":
            self.sweep(step[1])
        elif self.sent:
            request, key = self.sent[step[1] % len(self.sent)]
            if step[2]:
                request = Request(
                    request.kind,
                    request.tenant_id,
                    request.amount + 1,
                    request.job_id,
                    request.expires_at,
                )
            self.send(request, key)
        self.assert_balances()

    def resolve(self, intent: JobIntent) -> Request:
        model = self.model
        jobs = sorted(model.holds)
        if intent.kind == "hold" and (intent.pick % 5 != 4 or not jobs):
            job_id = f"job-{len(self.sent)}"
            owner = TENANTS[intent.pick % 2]
        elif jobs:
            job_id = jobs[intent.pick % len(jobs)]
            owner = model.holds[job_id].tenant_id
        else:
            job_id, owner = "job-never-held", TENANTS[intent.pick % 2]
        tenant_id = next(t for t in TENANTS if t != owner) if intent.other_tenant else owner

        hold = model.holds.get(job_id)
        if intent.kind == "hold":
            base = model.spendable(tenant_id, datetime.now(UTC))
        elif hold is None:
            base = 10
        elif intent.kind == "refund":
            base = hold.captured - hold.refunded
        else:
            base = hold.unsettled
        amount = max(1, base * intent.share // 100)
        return Request(intent.kind, tenant_id, amount, job_id=job_id)

    def send(self, request: Request, key: str) -> None:
        self.sent.append((request, key))
        result = post(self.engine, request, key)

        earlier = self.posted_keys.get((request.tenant_id, key))
        if earlier is not None:
            self.assert_replay(request, earlier, result)
            return

        rejection = self.predict_rejection(request)
        if rejection is not None:
            assert type(result) is rejection.error, (request, result)
            self.assert_limit(rejection, result)
            return

        assert isinstance(result, PostedTransaction), (request, result)
        assert result.replayed is False
        self.posted_keys[(request.tenant_id, key)] = (request, result.transaction_id)
        self.apply(request, result.transaction_id)

    def predict_rejection(self, request: Request) -> Rejection | None:
        model = self.model
        if request.kind == "hold":
            return model.check_hold(
                request.tenant_id, request.job_id, request.amount, datetime.now(UTC)
            )
        if request.kind in ("capture", "release"):
            return model.check_settle(request.tenant_id, request.job_id, request.amount)
        if request.kind == "refund":
            return model.check_refund(request.tenant_id, request.job_id, request.amount)
        return None

    def apply(self, request: Request, transaction_id: int) -> None:
        model = self.model
        if request.kind == "grant":
            model.grant(transaction_id, request.tenant_id, request.amount, request.expires_at)
        elif request.kind == "hold":
            model.hold(request.tenant_id, request.job_id, request.amount, datetime.now(UTC))
        elif request.kind == "capture":
            model.capture(request.job_id, request.amount)
        elif request.kind == "release":
            expiries = model.release(request.job_id, request.amount, transaction_id)
            if expiries:
                self.assert_newest_entries(request.tenant_id, transaction_id, expiries)
        else:
            model.refund(transaction_id, request.tenant_id, request.job_id, request.amount)

    def sweep(self, now: datetime) -> None:
        posted = expire_grants(self.engine, now=now)
        predicted = self.model.expire(now)
        assert [(p.tenant_id, p.key, p.amount_micros) for p in posted] == [
            (p.tenant_id, p.key, p.amount) for p in predicted
        ]

    def assert_replay(self, request: Request, earlier: tuple[Request, int], result) -> None:
        first, transaction_id = earlier
        differing = [
            name
            for name, a, b in (
                ("kind", first.kind, request.kind),
                ("job_id", first.job_id, request.job_id),
                ("amount", first.amount, request.amount),
                ("reason", first.reason, request.reason),
                ("expires_at", first.expires_at, request.expires_at),
            )
            if a != b
        ]
        if differing:
            assert isinstance(result, IdempotencyConflict), (request, result)
            assert result.field == differing[0]
        else:
            assert isinstance(result, PostedTransaction), (request, result)
            assert result.replayed is True
            assert result.transaction_id == transaction_id

    @staticmethod
    def assert_limit(rejection: Rejection, error: LedgerError) -> None:
        if isinstance(error, InsufficientFunds):
            assert error.available_micros == rejection.limit
        elif isinstance(error, HoldExceeded):
            assert error.remaining_micros == rejection.limit
        elif isinstance(error, RefundExceeded):
            assert error.refundable_micros == rejection.limit

    def assert_newest_entries(self, tenant_id: str, release_id: int, expiries) -> None:
        entries = get_statement(self.engine, tenant_id, limit=len(expiries) + 1).entries
        oldest_first = list(reversed(entries))
        assert oldest_first[0].transaction_id == release_id
        assert [(e.kind, e.key, e.amount_micros) for e in oldest_first[1:]] == [
            ("expire", p.key, p.amount) for p in expiries
        ]

    def assert_balances(self) -> None:
        model = self.model
        for tenant_id in TENANTS:
            assert get_balances(self.engine, tenant_id) == TenantBalances(
                available_micros=model.available(tenant_id),
                held_micros=model.held(tenant_id),
                spent_micros=model.spent(tenant_id),
            )
        assert get_platform_balances(self.engine) == PlatformBalances(
            funding_micros=model.funding,
            revenue_micros=model.revenue,
            expired_micros=model.expired,
        )


def read_statement(engine, tenant_id: str) -> list:
    """Read a tenant's whole statement in small pages, oldest entry first."""
    entries = []
    cursor = None
    while True:
        page = get_statement(engine, tenant_id, limit=7, cursor=cursor)
        entries.extend(page.entries)
        if page.next_cursor is None:
            return list(reversed(entries))
        cursor = page.next_cursor


def assert_statement_adds_up(engine, tenant_id: str) -> list:
    """Check that a tenant's statement runs from zero to its balances; return it."""
    entries = read_statement(engine, tenant_id)
    ids = [entry.transaction_id for entry in entries]
    assert ids == sorted(set(ids))

    available = 0
    held = 0
    for entry in entries:
        available += entry.available_change_micros
        held += entry.held_change_micros
        assert entry.available_after_micros == available
    balances = get_balances(engine, tenant_id)
    assert available == balances.available_micros
    assert held == balances.held_micros
    return entries


def assert_holds_match(engine, model: LedgerModel) -> None:
    for job_id, expected in model.holds.items():
        actual = get_hold(engine, job_id)
        assert actual is not None
        assert actual.tenant_id == expected.tenant_id
        assert actual.amount_micros == expected.amount
        assert actual.captured_micros == expected.captured
        assert actual.released_micros == expected.released
        assert actual.refunded_micros == expected.refunded


OPENING_STEPS = [
    Request("grant", "acme", 100),
    Request("grant", "acme", 100, expires_at=EXPIRIES[2]),
    Request("grant", "globex", 100),
]
"""Grants that every sequential run starts with, so that most holds have credits to draw on."""


@pytest.mark.parametrize("backend", ["plpgsql", "sqlite"])
@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=steps)
def test_random_operations_match_model(backend_engines, backend, steps):
    engine = backend_engines[backend]
    empty_ledger(engine)
    run = SequentialRun(engine)

    for step in OPENING_STEPS + steps:
        run.run(step)

    report = verify_ledger(engine)
    assert report.ok, str(report)
    for tenant_id in TENANTS:
        assert_statement_adds_up(engine, tenant_id)
    assert_holds_match(engine, run.model)


THREADS = 4

concurrent_steps = st.lists(
    st.one_of(grant_requests, job_intents, job_intents, job_intents, sweeps, replays),
    min_size=5,
    max_size=20,
)


class ThreadRun:
    """One thread's requests. Its jobs are its own, so what it reads of them stays true."""

    def __init__(self, engine, thread: int) -> None:
        self.engine = engine
        self.thread = thread
        self.sent: list[tuple[Request, str, PostedTransaction | LedgerError]] = []
        self.sweeps: list[tuple[datetime, list[PostedTransaction]]] = []
        self.job_tenants: dict[str, str] = {}

    def run(self, plan) -> None:
        for index, step in enumerate(plan):
            key = f"t{self.thread}-k{index}"
            if isinstance(step, Request):
                request = step
            elif isinstance(step, JobIntent):
                request = self.resolve(step, index)
            elif step[0] == "expire":
                self.sweeps.append((step[1], expire_grants(self.engine, now=step[1])))
                continue
            elif self.sent:
                request, key, _ = self.sent[step[1] % len(self.sent)]
                if step[2]:
                    request = Request(
                        request.kind,
                        request.tenant_id,
                        request.amount + 1,
                        request.job_id,
                        request.expires_at,
                    )
            else:
                continue

            result = post(self.engine, request, key)
            self.sent.append((request, key, result))
            if request.kind == "hold" and isinstance(result, PostedTransaction):
                self.job_tenants[request.job_id] = request.tenant_id

    def resolve(self, intent: JobIntent, index: int) -> Request:
        """Build a request like `SequentialRun.resolve`, from what the ledger returns now."""
        jobs = sorted(self.job_tenants)
        if intent.kind == "hold" and (intent.pick % 5 != 4 or not jobs):
            job_id = f"t{self.thread}-job-{index}"
            owner = TENANTS[intent.pick % 2]
        elif jobs:
            job_id = jobs[intent.pick % len(jobs)]
            owner = self.job_tenants[job_id]
        else:
            job_id, owner = f"t{self.thread}-never-held", TENANTS[intent.pick % 2]
        tenant_id = next(t for t in TENANTS if t != owner) if intent.other_tenant else owner

        hold_record = get_hold(self.engine, job_id)
        if intent.kind == "hold":
            base = get_balances(self.engine, tenant_id).available_micros
        elif hold_record is None:
            base = 10
        elif intent.kind == "refund":
            base = hold_record.captured_micros - hold_record.refunded_micros
        else:
            base = hold_record.remaining_micros
        amount = max(1, base * intent.share // 100)
        return Request(intent.kind, tenant_id, amount, job_id=job_id)


def run_in_threads(engine, plans) -> list[ThreadRun]:
    """Run each plan in its own thread, all released at once; fail on any exception."""
    runs = [ThreadRun(engine, thread) for thread in range(len(plans))]
    barrier = threading.Barrier(len(plans))
    errors: list[BaseException] = []

    def work(run: ThreadRun, plan) -> None:
        try:
            barrier.wait(timeout=10)
            run.run(plan)
        except BaseException as error:  # noqa: BLE001 - reported by the assert below
            errors.append(error)

    threads = [
        threading.Thread(target=work, args=(run, plan))
        for run, plan in zip(runs, plans, strict=True)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    return runs


def replay_statement(
    tenant_id: str, entries, model: LedgerModel, expiries_by_key, latest_sweep
) -> None:
    """Apply a tenant's statement to the model, checking that each entry was allowed."""
    now = datetime.now(UTC)
    index = 0
    while index < len(entries):
        entry = entries[index]
        kind, job_id, amount = entry.kind, entry.job_id, entry.amount_micros
        index += 1

        if kind == "grant":
            model.grant(entry.transaction_id, tenant_id, amount, expiries_by_key[entry.key])
        elif kind == "hold":
            assert model.check_hold(tenant_id, job_id, amount, now) is None, entry
            model.hold(tenant_id, job_id, amount, now)
        elif kind == "capture":
            assert model.check_settle(tenant_id, job_id, amount) is None, entry
            model.capture(job_id, amount)
        elif kind == "release":
            assert model.check_settle(tenant_id, job_id, amount) is None, entry
            # The expiries of credits that the release returned to expired lots come right
            # after it, keyed expire/{lot}/{release}.
            following = []
            while index < len(entries) and is_release_expiry(entries[index], entry):
                following.append(entries[index])
                index += 1
            expired_lots = {int(e.key.split("/")[1]) for e in following}
            predicted = model.release(
                job_id, amount, entry.transaction_id, expired_lots, latest_sweep
            )
            assert [(e.key, e.amount_micros, e.job_id) for e in following] == [
                (p.key, p.amount, p.job_id) for p in predicted
            ]
        elif kind == "refund":
            assert model.check_refund(tenant_id, job_id, amount) is None, entry
            model.refund(entry.transaction_id, tenant_id, job_id, amount)
        else:
            assert kind == "expire", entry
            assert job_id is None, entry
            lot_id = int(entry.key.split("/")[1])
            lot = model.lots[lot_id]
            assert not lot.expired
            assert lot.expires_at is not None and latest_sweep is not None
            assert lot.expires_at <= latest_sweep
            (predicted,) = model.expire_lot(lot_id)
            assert predicted.amount == amount


def is_release_expiry(entry, release_entry) -> bool:
    parts = entry.key.split("/")
    return (
        entry.kind == "expire" and len(parts) == 3 and parts[2] == str(release_entry.transaction_id)
    )


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans=st.lists(concurrent_steps, min_size=THREADS, max_size=THREADS))
def test_concurrent_random_operations_keep_invariants(pg_engine, plans):
    engine = pg_engine
    empty_ledger(engine)
    opening = [
        grant(
            engine,
            tenant_id=request.tenant_id,
            amount_micros=request.amount,
            key=f"opening-{n}",
            expires_at=request.expires_at,
        )
        for n, request in enumerate(OPENING_STEPS)
    ]

    runs = run_in_threads(engine, plans)

    report = verify_ledger(engine)
    assert report.ok, str(report)

    statements = {tenant_id: assert_statement_adds_up(engine, tenant_id) for tenant_id in TENANTS}
    by_id = {entry.transaction_id: entry for entries in statements.values() for entry in entries}

    # Every result the threads saw matches the statement, and every entry that a caller
    # posted has a first result behind it.
    expiries_by_key = {
        f"opening-{n}": request.expires_at for n, request in enumerate(OPENING_STEPS)
    }
    first_posts = {posted.transaction_id for posted in opening}
    for run in runs:
        for request, key, result in run.sent:
            if isinstance(result, LedgerError):
                continue
            entry = by_id[result.transaction_id]
            assert (entry.kind, entry.key, entry.job_id) == (request.kind, key, request.job_id)
            assert entry.amount_micros == result.amount_micros
            if request.kind == "grant":
                expiries_by_key[key] = request.expires_at
            if not result.replayed:
                first_posts.add(result.transaction_id)
    caller_posted = {e.transaction_id for e in by_id.values() if e.kind != "expire"}
    assert caller_posted == first_posts
    sweeps_run = [sweep for run in runs for sweep in run.sweeps]
    for _, posted in sweeps_run:
        for expiry in posted:
            assert by_id[expiry.transaction_id].key == expiry.key
            assert by_id[expiry.transaction_id].amount_micros == expiry.amount_micros

    # Replaying each tenant's statement in order keeps every rule and ends at its balances.
    model = LedgerModel()
    latest_sweep = max((now for now, _ in sweeps_run), default=None)
    for tenant_id, entries in statements.items():
        replay_statement(tenant_id, entries, model, expiries_by_key, latest_sweep)
        assert get_balances(engine, tenant_id) == TenantBalances(
            available_micros=model.available(tenant_id),
            held_micros=model.held(tenant_id),
            spent_micros=model.spent(tenant_id),
        )
    assert get_platform_balances(engine) == PlatformBalances(
        funding_micros=model.funding, revenue_micros=model.revenue, expired_micros=model.expired
    )
    assert_holds_match(engine, model)

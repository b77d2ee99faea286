from datetime import UTC, datetime

import pytest

from ledger import (
    HoldExceeded,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    Operation,
    PostedTransaction,
    TenantBalances,
    expire_grants,
    get_balances,
    get_statement,
    grant,
    post_batch,
)


def test_batch_posts_in_order_and_reports_each(any_engine, ledger_inconsistencies):
    operations = [
        Operation(kind="grant", tenant_id="acme", amount_micros=100, key="g"),
        Operation(kind="hold", tenant_id="acme", job_id="j", amount_micros=60, key="h"),
        Operation(kind="hold", tenant_id="acme", job_id="k", amount_micros=41, key="h2"),
        Operation(kind="capture", tenant_id="acme", job_id="j", amount_micros=25, key="c"),
        Operation(kind="release", tenant_id="acme", job_id="j", amount_micros=36, key="r"),
        Operation(kind="release", tenant_id="acme", job_id="j", amount_micros=35, key="r2"),
        Operation(
            kind="refund", tenant_id="acme", job_id="j", amount_micros=5, key="rf", reason="late"
        ),
    ]

    results = post_batch(any_engine, operations)

    assert [type(result).__name__ for result in results] == [
        "PostedTransaction",
        "PostedTransaction",
        "InsufficientFunds",
        "PostedTransaction",
        "HoldExceeded",
        "PostedTransaction",
        "PostedTransaction",
    ]
    assert results[2].available_micros == 40
    assert results[4].remaining_micros == 35
    assert [r.kind for r in results if isinstance(r, PostedTransaction)] == [
        "grant",
        "hold",
        "capture",
        "release",
        "refund",
    ]
    assert get_balances(any_engine, "acme") == TenantBalances(
        available_micros=80, held_micros=0, spent_micros=20
    )
    assert [e.key for e in get_statement(any_engine, "acme").entries] == [
        "rf",
        "r2",
        "c",
        "h",
        "g",
    ]
    assert ledger_inconsistencies(any_engine) == []


def test_batch_rejection_leaves_key_free(any_engine):
    grant(any_engine, tenant_id="acme", amount_micros=10, key="g")

    results = post_batch(
        any_engine,
        [
            Operation(kind="hold", tenant_id="acme", job_id="j", amount_micros=20, key="h"),
            Operation(kind="grant", tenant_id="acme", amount_micros=10, key="g2"),
            Operation(kind="hold", tenant_id="acme", job_id="j", amount_micros=20, key="h"),
        ],
    )

    assert isinstance(results[0], InsufficientFunds)
    assert isinstance(results[2], PostedTransaction)
    assert results[2].replayed is False
    assert get_balances(any_engine, "acme").held_micros == 20


def test_batch_repeated_key_replays(any_engine):
    operation = Operation(kind="grant", tenant_id="acme", amount_micros=10, key="g")

    first, second = post_batch(any_engine, [operation, operation])

    assert first.replayed is False
    assert second.replayed is True
    assert second.transaction_id == first.transaction_id
    assert get_balances(any_engine, "acme").available_micros == 10


def test_batch_replays_earlier_single_operation(any_engine):
    posted = grant(any_engine, tenant_id="acme", amount_micros=10, key="g")

    (replayed, conflict) = post_batch(
        any_engine,
        [
            Operation(kind="grant", tenant_id="acme", amount_micros=10, key="g"),
            Operation(kind="grant", tenant_id="acme", amount_micros=11, key="g"),
        ],
    )

    assert replayed.transaction_id == posted.transaction_id
    assert replayed.replayed is True
    assert isinstance(conflict, IdempotencyConflict)
    assert conflict.field == "amount"


def test_batch_invalid_amount_reported_in_place(any_engine):
    results = post_batch(
        any_engine,
        [
            Operation(kind="grant", tenant_id="acme", amount_micros=0, key="g0"),
            Operation(kind="grant", tenant_id="acme", amount_micros=10, key="g1"),
        ],
    )

    assert isinstance(results[0], InvalidAmount)
    assert isinstance(results[1], PostedTransaction)
    assert get_balances(any_engine, "acme").available_micros == 10


def test_batch_malformed_operation_posts_nothing(any_engine):
    with pytest.raises(ValueError, match="job_id must not be empty"):
        post_batch(
            any_engine,
            [
                Operation(kind="grant", tenant_id="acme", amount_micros=10, key="g"),
                Operation(kind="hold", tenant_id="acme", amount_micros=10, key="h"),
            ],
        )

    assert get_balances(any_engine, "acme").available_micros == 0


def test_batch_refund_without_reason_posts_nothing(any_engine):
    with pytest.raises(ValueError, match="operation 1: a refund needs a reason"):
        post_batch(
            any_engine,
            [
                Operation(kind="grant", tenant_id="acme", amount_micros=10, key="g"),
                Operation(kind="refund", tenant_id="acme", job_id="j", amount_micros=1, key="r"),
            ],
        )

    assert get_balances(any_engine, "acme").available_micros == 0


def test_batch_rejects_expire_kind(any_engine):
    with pytest.raises(ValueError, match="invalid transaction kind 'expire'"):
        post_batch(
            any_engine, [Operation(kind="expire", tenant_id="acme", amount_micros=1, key="x")]
        )


def test_batch_grant_with_expiry(any_engine):
    expires_at = datetime(2090, 1, 1, tzinfo=UTC)

    (posted,) = post_batch(
        any_engine,
        [
            Operation(
                kind="grant",
                tenant_id="acme",
                amount_micros=10,
                key="g",
                expires_at=expires_at,
            )
        ],
    )

    assert [e.key for e in expire_grants(any_engine, now=expires_at)] == [
        f"expire/{posted.transaction_id}"
    ]


def test_empty_batch_posts_nothing(any_engine):
    assert post_batch(any_engine, []) == []


def test_batch_of_many_tenants(any_engine, ledger_inconsistencies):
    operations = []
    for tenant in range(20):
        tenant_id = f"tenant-{tenant}"
        operations.append(Operation(kind="grant", tenant_id=tenant_id, amount_micros=50, key="g"))
        operations.append(
            Operation(
                kind="hold", tenant_id=tenant_id, job_id=f"{tenant_id}/j", amount_micros=30, key="h"
            )
        )
        operations.append(
            Operation(
                kind="capture",
                tenant_id=tenant_id,
                job_id=f"{tenant_id}/j",
                amount_micros=30,
                key="c",
            )
        )

    results = post_batch(any_engine, operations)

    assert all(isinstance(result, PostedTransaction) for result in results)
    assert get_balances(any_engine, "tenant-7") == TenantBalances(
        available_micros=20, held_micros=0, spent_micros=30
    )
    assert ledger_inconsistencies(any_engine) == []


def test_batch_hold_exceeded_keeps_hold(any_engine):
    grant(any_engine, tenant_id="acme", amount_micros=10, key="g")

    results = post_batch(
        any_engine,
        [
            Operation(kind="hold", tenant_id="acme", job_id="j", amount_micros=10, key="h"),
            Operation(kind="capture", tenant_id="acme", job_id="j", amount_micros=11, key="c"),
        ],
    )

    assert isinstance(results[0], PostedTransaction)
    assert isinstance(results[1], HoldExceeded)
    assert get_balances(any_engine, "acme").held_micros == 10

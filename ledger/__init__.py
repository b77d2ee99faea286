"""Double-entry ledger of credits, in integer micro-credits.

Tenants get credits by grant, jobs hold their budget, and settlement captures the cost and
releases the rest. Create the schema with `ledger.schema.upgrade` and an engine with
`create_ledger_engine`, then call the operations below; each is one database transaction and
idempotent by its key.
"""

from ledger.balances import (
    HoldRecord,
    PlatformBalances,
    TenantBalances,
    get_balances,
    get_hold,
    get_platform_balances,
)
from ledger.db import create_ledger_engine
from ledger.errors import (
    DuplicateHold,
    HoldExceeded,
    IdempotencyConflict,
    InsufficientFunds,
    InvalidAmount,
    LedgerError,
    UnknownHold,
)
from ledger.metering import segment_cost_micros
from ledger.money import MICROS_PER_CREDIT, credits_to_micros, micros_to_credits
from ledger.operations import PostedTransaction, capture, grant, hold, release
from ledger.schema import upgrade

__all__ = [
    "MICROS_PER_CREDIT",
    "DuplicateHold",
    "HoldExceeded",
    "HoldRecord",
    "IdempotencyConflict",
    "InsufficientFunds",
    "InvalidAmount",
    "LedgerError",
    "PlatformBalances",
    "PostedTransaction",
    "TenantBalances",
    "UnknownHold",
    "capture",
    "create_ledger_engine",
    "credits_to_micros",
    "get_balances",
    "get_hold",
    "get_platform_balances",
    "grant",
    "hold",
    "micros_to_credits",
    "release",
    "segment_cost_micros",
    "upgrade",
]

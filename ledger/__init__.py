"""Double-entry ledger of credits, in integer micro-credits.

Tenants get credits by grant, jobs hold their budget, and settlement captures the cost and
releases the rest; a refund gives captured credits back, and granted credits can expire.
What providers charge for each job is booked beside it (`record_provider_charge`).
Create the schema with `ledger.schema.upgrade` and an engine with `create_ledger_engine`,
then call the operations below; each is one database transaction and idempotent by its key.
`verify_ledger` audits the whole ledger.
"""

from ledger.balances import (
    HoldRecord,
    PlatformBalances,
    TenantBalances,
    get_balances,
    get_hold,
    list_open_holds,
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
    RefundExceeded,
    UnknownHold,
)
from ledger.expiry import expire_grants
from ledger.metering import (
    BillingRule,
    CappedCapture,
    billing_rule_for,
    capped_capture,
    segment_cost_micros,
)
from ledger.money import MICROS_PER_CREDIT, credits_to_micros, micros_to_credits
from ledger.operations import (
    Operation,
    PostedTransaction,
    capture,
    grant,
    hold,
    post_batch,
    refund,
    release,
)
from ledger.provider_costs import (
    JobVariance,
    ProviderCharge,
    RecordedCharge,
    record_provider_charge,
    variance_report,
)
from ledger.schema import upgrade
from ledger.statements import StatementEntry, StatementPage, get_statement
from ledger.verify import VerifyReport, verify_ledger

__all__ = [
    "MICROS_PER_CREDIT",
    "BillingRule",
    "CappedCapture",
    "DuplicateHold",
    "HoldExceeded",
    "HoldRecord",
    "IdempotencyConflict",
    "InsufficientFunds",
    "InvalidAmount",
    "JobVariance",
    "LedgerError",
    "Operation",
    "PlatformBalances",
    "PostedTransaction",
    "ProviderCharge",
    "RecordedCharge",
    "RefundExceeded",
    "StatementEntry",
    "StatementPage",
    "TenantBalances",
    "UnknownHold",
    "VerifyReport",
    "billing_rule_for",
    "capped_capture",
    "capture",
    "create_ledger_engine",
    "credits_to_micros",
    "expire_grants",
    "get_balances",
    "get_hold",
    "list_open_holds",
    "get_platform_balances",
    "get_statement",
    "grant",
    "hold",
    "micros_to_credits",
    "post_batch",
    "record_provider_charge",
    "refund",
    "release",
    "segment_cost_micros",
    "upgrade",
    "variance_report",
    "verify_ledger",
]

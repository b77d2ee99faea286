"""`/v1/account`: the caller's credit balances."""

from fastapi import APIRouter, Depends

from api.auth import BILLING_READ, JOBS_READ
from api.credits import format_credits
from api.deps import CurrentTenant, LedgerEngineDep, require_scope
from api.models import AccountView
from ledger.balances import get_balances

router = APIRouter(prefix="/v1/account", tags=["account"])


# TODO: require billing:read alone once every client is issued billing scopes; until then a
# jobs:read token reads the balance too.
@router.get("", dependencies=[Depends(require_scope(BILLING_READ, JOBS_READ))])
def get_account(tenant: CurrentTenant, engine: LedgerEngineDep) -> AccountView:
    """Return the caller's available, held and spent credits."""
    # A plain def, so that FastAPI runs the blocking database read in its thread pool.
    balances = get_balances(engine, tenant)
    return AccountView(
        tenant_id=tenant,
        available=format_credits(balances.available_micros),
        held=format_credits(balances.held_micros),
        spent=format_credits(balances.spent_micros),
    )

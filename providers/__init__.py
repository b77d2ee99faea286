"""Compute provider adapters behind one contract, `ProviderClient`.

This package re-exports only the contract from `providers.base`. Workflow code imports those
dataclasses, so importing the package must stay free of side effects and heavy dependencies.
Import the adapters from `providers.local`, `providers.fake`, `providers.runpod` and
`providers.aws`, and `build_providers` from `providers.registry`.
"""

from providers.base import (
    FINAL_INSTANCE_STATES,
    FindsInstances,
    InstanceNotFound,
    InstanceState,
    InstanceStatus,
    ListsManagedInstances,
    LogsNotAvailable,
    ManagedInstance,
    Offer,
    OutOfCapacity,
    PermanentProviderError,
    ProviderClient,
    ProviderError,
    ProvisionRequest,
    QuoteRequest,
    ReadsLogs,
    TransientProviderError,
)

__all__ = [
    "FINAL_INSTANCE_STATES",
    "FindsInstances",
    "InstanceNotFound",
    "InstanceState",
    "InstanceStatus",
    "ListsManagedInstances",
    "LogsNotAvailable",
    "ManagedInstance",
    "Offer",
    "OutOfCapacity",
    "PermanentProviderError",
    "ProviderClient",
    "ProviderError",
    "ProvisionRequest",
    "QuoteRequest",
    "ReadsLogs",
    "TransientProviderError",
]

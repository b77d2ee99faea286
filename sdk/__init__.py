"""Python client of the compute-as-credit API, for people and agents."""

from sdk.client import FINAL_STATUSES, ApiError, Client

__all__ = ["FINAL_STATUSES", "ApiError", "Client"]

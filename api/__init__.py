"""FastAPI front door: starts, signals and queries job workflows and reads the ledger."""

"""Job workflows and their dataclasses; deterministic code only."""

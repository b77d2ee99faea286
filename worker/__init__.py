"""Builds the Temporal client and runs the job worker."""

"""Small real workloads that example jobs run."""

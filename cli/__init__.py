"""The `cac` command line."""

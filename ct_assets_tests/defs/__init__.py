"""Dagster-layer tests: assets, checks, sensors and jobs run in-process on a temporary DuckDB and instance."""

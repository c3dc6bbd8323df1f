"""Plain-logic tests: ct_assets.config, store, core and tools on tiny frames and temporary DuckDB files, no Dagster."""

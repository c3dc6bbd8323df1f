"""Storage: the DuckDB warehouse (short connections, one writer at a time under an OS file lock), its
schema and upgrades, SQL helpers and the row hashes that make data versions. It calls nothing above it."""

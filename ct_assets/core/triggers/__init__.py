"""Triggers: the retrain decision from small inputs (decision), the snapshot the sensor reads instead of
DuckDB (snapshot), and freshness (freshness)."""

"""The retrain decision and freshness, read from the ingest log and the registry."""

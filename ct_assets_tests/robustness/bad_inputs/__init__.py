"""Every row of docs/ingest_policy.md, proven on one landing folder of bad and good files."""

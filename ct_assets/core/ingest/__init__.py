"""Ingest: the landing folder (landing), reading files in chunks (reader), the Great Expectations suite
(quality), and appending whole files as batches or quarantining them (ingest)."""

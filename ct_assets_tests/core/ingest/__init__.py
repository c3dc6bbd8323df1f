"""Ingest: the landing folder convention, the Great Expectations suite, the append into the warehouse."""

"""Properties of ingest, the warehouse and the data hash, on frames Hypothesis generates."""

"""core/ingest"""

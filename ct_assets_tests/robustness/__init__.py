"""Robustness: bad inputs, killed processes, security properties, load and contention, properties."""

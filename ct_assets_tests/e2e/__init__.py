"""End-to-end tests: the command line and the whole loop on small synthetic data."""

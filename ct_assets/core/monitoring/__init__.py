"""Monitoring the champion: drift and decay signals (signals), and its scoring on fresh rows (champion)."""

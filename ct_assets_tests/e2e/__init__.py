"""End to end: the ct-assets console script, the Dagster web server, the daemon and the demo, as processes."""

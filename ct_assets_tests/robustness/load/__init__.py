"""Load and contention on real parts: the daemon, the web server, a reader beside the pipeline."""

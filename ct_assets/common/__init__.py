"""Small helpers every layer may use: the clock (naive UTC), failpoints for crash tests, a stopwatch, and
code versions (a module's source hash with its imports)."""

"""Small helpers every layer may use: the clock (naive UTC), failpoints for crash tests, a stopwatch."""

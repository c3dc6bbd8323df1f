"""What the test modules share, one implementation each: `config` (the small fast configuration, TOML
files), `data` (simulated frames), `runs` (in-process job runs, sensor ticks, what a run recorded),
`warehouse` (the champion and ledger as stored, another process holding the DuckDB file), `cli` (the
console script in a subprocess), `processes` (process trees, ports) and `servers` (the Dagster web
server, the daemon, GraphQL, a local webhook)."""

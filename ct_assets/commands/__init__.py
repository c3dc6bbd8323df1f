"""What each `ct-assets` command does: in-process Dagster runs on the instance at DAGSTER_HOME (runs),
cycle, status, review, export and demo. The CLI only parses arguments and prints."""

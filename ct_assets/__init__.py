"""ct_assets: continuous training of tabular models as a declarative Dagster asset graph.

Layers, each importing only the ones below it:

    cli/        argument parsing and printing (`ct-assets`)
    commands/   what each command does, running Dagster jobs in-process on the instance at DAGSTER_HOME
    defs/       the Dagster definitions: assets by stage, checks, jobs, sensors, resources (definitions.py)
    core/       plain logic by stage, no Dagster: ingest, datasets, modeling, gate, registry, triggers,
                monitoring, alerts
    tools/      developer tools on top of core: the simulator, reproduce
    store/      the DuckDB warehouse: connections, single-writer lock, schema, SQL helpers, row hashes
    config/, common/, errors.py   the configuration, small shared helpers (clock, failpoints, stopwatch)
"""

__version__ = "0.1.0"

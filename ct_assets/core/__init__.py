"""Plain logic by stage, no Dagster: ingest, datasets, modeling, gate, registry, triggers, monitoring, and
alerts. Each stage is a module or a package named after it; the asset of a stage calls into it."""

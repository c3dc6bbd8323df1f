"""The asset graph, one module per stage (group): ingestion, datasets, training, validation, registry,
monitoring. Each asset calls the plain logic of the same stage in ct_assets.core. Their code versions and
freshness policies are attached when the definitions are built (defs/build.py)."""

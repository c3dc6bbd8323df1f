"""The asset graph, one module per stage of the loop: ingestion, datasets, training, validation, registry."""

INGESTION = "ingestion"
DATASETS = "datasets"
TRAINING = "training"
VALIDATION = "validation"
REGISTRY = "registry"
MONITORING = "monitoring"

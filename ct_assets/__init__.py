"""ct_assets: continuous training of tabular models as a declarative Dagster asset graph."""

__version__ = "0.1.0"

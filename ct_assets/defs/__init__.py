"""The Dagster layer: assets by stage (assets/), asset checks (checks/), jobs, sensors, resources, the
instance helpers, and the builder of the one Definitions object (build.py, loaded by ct_assets.definitions).
Asset bodies are wiring: they call one plain function in ct_assets.core and turn its outcome into metadata."""

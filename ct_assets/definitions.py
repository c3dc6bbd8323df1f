"""The one Dagster Definitions object of ct_assets (what `dagster dev`, `dg` and `ct-assets` load).

Built by ct_assets.defs.build when this module is loaded; the modules under ct_assets/defs/ hold the
assets, checks, jobs, sensors and resources it gathers.
"""

from ct_assets.defs.build import build_definitions

defs = build_definitions()

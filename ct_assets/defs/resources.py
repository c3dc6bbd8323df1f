"""Dagster resources: the configuration (and through it the warehouse) and a JSON hand-off IO manager."""

import json
import os
from typing import Any

import dagster as dg

from ct_assets.config import Settings, load_settings


class SettingsResource(dg.ConfigurableResource):
    """The ct_assets TOML configuration: `config_file`, else $CT_ASSETS_CONFIG, else the built-in defaults.

    Read when a run or a tick uses it, never at import time; relative paths resolve against the
    working directory of the process.
    """

    config_file: str = ""

    def load(self) -> Settings:
        return load_settings(self.config_file or None)


class HandoffIOManager(dg.ConfigurableIOManager):
    """Hands small JSON documents (versions, hashes, paths) from an asset to its downstream assets.

    Each asset stores its own data (DuckDB tables, model files); what travels along an edge of the
    graph is a JSON file `<state>/handoff/<asset>.json`, written atomically. Nothing is pickled.
    """

    settings: dg.ResourceDependency[SettingsResource]

    def _path(self, asset_key: dg.AssetKey) -> Any:
        state = self.settings.load().paths.state / "handoff"
        return state / ("__".join(asset_key.path) + ".json")

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        path = self._path(context.asset_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"run_id": context.run_id, "value": obj}, indent=2, default=str))
        os.replace(tmp, path)

    def load_input(self, context: dg.InputContext) -> Any:
        path = self._path(context.asset_key)
        if not path.exists():
            return None
        return json.loads(path.read_text())["value"]

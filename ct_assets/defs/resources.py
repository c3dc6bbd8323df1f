"""Dagster resources: the configuration (and through it the warehouse) and a JSON hand-off IO manager."""

import json
import os
from typing import Any

import dagster as dg

from ct_assets.config import Settings, load_settings
from ct_assets.store.objects import ObjectStore

HANDOFF = "state/handoff"  # cluster mode: under [cluster] objects


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
    In cluster mode the file is the object `<objects>/state/handoff/<asset>.json`, so that steps on
    different hosts (Dask workers) hand off to each other.
    """

    settings: dg.ResourceDependency[SettingsResource]

    def _name(self, asset_key: dg.AssetKey) -> str:
        return "__".join(asset_key.path) + ".json"

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        if obj is None:
            return
        s = self.settings.load()
        text = json.dumps({"run_id": context.run_id, "value": obj}, indent=2, default=str)
        if s.cluster is not None:
            store = ObjectStore(s.cluster.objects)
            store.put(store.key(HANDOFF, self._name(context.asset_key)), text.encode())
            return
        path = s.paths.state / "handoff" / self._name(context.asset_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)

    def load_input(self, context: dg.InputContext) -> Any:
        s = self.settings.load()
        if s.cluster is not None:
            store = ObjectStore(s.cluster.objects)
            body = store.get(store.key(HANDOFF, self._name(context.asset_key)))
            return None if body is None else json.loads(body)["value"]
        path = s.paths.state / "handoff" / self._name(context.asset_key)
        if not path.exists():
            return None
        return json.loads(path.read_text())["value"]

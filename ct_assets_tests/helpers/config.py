"""Configurations for tests: the small, fast one most Dagster-level tests start from, and TOML files
merged by ct_assets over its defaults."""

import tomllib
from pathlib import Path
from typing import Any

from ct_assets.config import default_config_text

CHECKOUT = Path(__file__).resolve().parents[2]  # the checkout these tests are in

WEAK = {"num_iterations": 2, "num_leaves": 2}  # [training] of a challenger the gate must block


def small(**override: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A small, fast configuration; tables given here merge over it."""
    tables: dict[str, dict[str, Any]] = {
        "retrain": {"min_new_rows": 1000},
        "dataset": {"min_train_rows": 200, "golden_min_rows_per_slice": 50},
        "gate": {"min_slice_rows": 100},
        "training": {"num_iterations": 30},
    }
    for name, values in override.items():
        tables[name] = {**tables.get(name, {}), **values}
    return tables


def default_tables() -> dict[str, Any]:
    """The built-in configuration as TOML tables."""
    return tomllib.loads(default_config_text())


def write_text(path: Path, text: str) -> Path:
    """Write `text` to `path` (UTF-8), creating its folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _toml_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int | float):
        return repr(v)
    if isinstance(v, str):
        return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f'"{k}" = {_toml_value(x)}' for k, x in v.items()) + "}"
    raise TypeError(type(v))


def write_config(path: Path, tables: dict[str, dict[str, Any]]) -> Path:
    """Write a TOML file holding the given tables (merged by ct_assets over its defaults); the table
    named "" holds top-level keys."""
    lines = []
    for table, values in tables.items():
        if table == "" or not isinstance(values, dict):
            continue
        lines.append(f"[{table}]")
        lines += [f'"{k}" = {_toml_value(v)}' for k, v in values.items()]
        lines.append("")
    top = tables.get("", {})
    head = [f'"{k}" = {_toml_value(v)}' for k, v in top.items()]
    path.write_text("\n".join([*head, "", *lines]))
    return path

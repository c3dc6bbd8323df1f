"""The benchmarks import ct_assets inside functions (each section runs in a child process): a name moved
or renamed in the package breaks `make bench` only when that section runs. Every `from ct_assets... import`
in bench/ must resolve."""

import ast
import importlib
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


def _unresolved(path: Path) -> list[str]:
    missing = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("ct_assets"):
            module = importlib.import_module(node.module)
            for alias in node.names:
                if not hasattr(module, alias.name):
                    try:
                        importlib.import_module(f"{node.module}.{alias.name}")
                    except ImportError:
                        missing.append(f"{path.name}:{node.lineno}: {node.module}.{alias.name}")
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("ct_assets"):
                    importlib.import_module(alias.name)
    return missing


def test_every_ct_assets_name_the_benchmarks_import_exists() -> None:
    scripts = sorted(BENCH.rglob("*.py"))
    assert len(scripts) >= 10  # bench/run.py and its sections
    missing = [m for path in scripts for m in _unresolved(path)]
    assert not missing, missing

"""Code versions of the package's modules: a hash of a module's source and of the source of every module
of the package it imports, transitively (imports inside functions too), read with `ast`, never imported.

Dagster compares an asset's code version with the one its latest materialization recorded: an edit to
the gate marks `validation_report` stale, and leaves `raw_deltas`, which never imports the gate, alone.
"""

from __future__ import annotations

import ast
import hashlib
from functools import cache
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the ct_assets package this module belongs to


def _parents_and_self(name: str) -> list[str]:
    """`a.b.c` -> a, a.b, a.b.c: importing a module runs its packages' __init__ first."""
    parts = name.split(".")
    return [".".join(parts[: n + 1]) for n in range(len(parts))]


def source_file(module: str, root: Path = PACKAGE_ROOT) -> Path | None:
    """The file of a module or package under `root` (named after its folder), None for any other."""
    parts = module.split(".")
    if parts[0] != root.name:
        return None
    base = root.joinpath(*parts[1:])
    for path in (base / "__init__.py", base.with_suffix(".py")):
        if path.is_file():
            return path
    return None


@cache
def imported_modules(module: str, root: Path = PACKAGE_ROOT) -> frozenset[str]:
    """The modules and packages under `root` that `module` imports itself, anywhere in its source."""
    path = source_file(module, root)
    if path is None:
        raise ValueError(f"{module} is not a module of {root}")
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_bytes(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, *([node.module] if node.module else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from package import module`
    return frozenset(m for name in names for m in _parents_and_self(name) if source_file(m, root))


def module_closure(module: str, root: Path = PACKAGE_ROOT) -> list[str]:
    """`module`, its packages, and every module of the package they import, transitively; sorted."""
    seen: set[str] = set()
    todo = _parents_and_self(module)
    while todo:
        name = todo.pop()
        if name not in seen and source_file(name, root):
            seen.add(name)
            todo.extend(imported_modules(name, root))
    return sorted(seen)


@cache
def code_version(module: str, root: Path = PACKAGE_ROOT) -> str:
    """A hash of the sources of `module_closure(module)`: it changes when any of them does. Computed
    once per process (the definitions are built from the code the process loaded)."""
    h = hashlib.sha256()
    for name in module_closure(module, root):
        path = source_file(name, root)
        assert path is not None
        h.update(name.encode() + b"\0")
        h.update(path.read_bytes() + b"\0")
    return h.hexdigest()[:16]

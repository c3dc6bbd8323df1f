"""Code versions of the package's modules: a hash of a module's source and of the source of every module
of the package it imports, transitively (imports inside functions too), read with `ast`, never imported.

Dagster compares an asset's code version with the one its latest materialization recorded: an edit to
the gate marks `validation_report` stale, and leaves `raw_deltas`, which never imports the gate, alone.
"""

from __future__ import annotations

import ast
import hashlib
import re
from functools import cache
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the ct_assets package this module belongs to

# The text of each import statement that starts a line (indented or not; a parenthesized name list may
# span lines). Parsing these alone is some fifteen times faster than parsing whole modules, which every
# process loading the definitions would otherwise pay; a statement sharing its line with another one
# (`x = 1; import y`) is not seen, and ruff (E701, E702) keeps such lines out of the package.
_IMPORT_TEXT = re.compile(
    rb"^[ \t]*(?:from[ \t]+[\w.]+[ \t]+import[ \t]*(?:\([^)]*\)|[^\n]*)|import[ \t]+[^\n]*)", re.M
)


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
    for node in import_nodes(path):
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


def import_nodes(path: Path) -> list[ast.AST]:
    """Every import statement of a module's source: parsed from the text of its import statements alone,
    or from the whole source when one of those texts does not parse (a line of a docstring that reads
    like an import, a comment holding a parenthesis inside a name list)."""
    source = path.read_bytes()
    nodes: list[ast.AST] = []
    for match in _IMPORT_TEXT.finditer(source):
        try:
            nodes.extend(ast.walk(ast.parse(match.group(0).strip())))
        except SyntaxError:
            return full_import_nodes(path)
    return nodes


def full_import_nodes(path: Path) -> list[ast.AST]:
    """Every import statement of a module's source, from its whole syntax tree."""
    tree = ast.parse(path.read_bytes(), filename=str(path))
    return [n for n in ast.walk(tree) if isinstance(n, ast.Import | ast.ImportFrom)]


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

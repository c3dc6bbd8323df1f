"""Code versions of modules on a toy package: a module's version follows its source and the source of
every module of the package it imports, through relative imports and imports inside functions."""

import ast
from pathlib import Path

import pytest

from ct_assets.common import code_versions

TOY = {
    "__init__.py": "",
    "a.py": "def f() -> int:\n    from toy import b  # imported only when called\n\n    return b.X\n",
    "b.py": "from .c import Y\n\nX = Y\n",
    "c.py": "Y = 1\n",
    "d.py": "import os\n\nimport toy\n",
}


@pytest.fixture
def toy(tmp_path: Path) -> Path:
    root = tmp_path / "toy"
    root.mkdir()
    for name, text in TOY.items():
        (root / name).write_text(text)
    return root


def versions(root: Path) -> dict[str, str]:
    """Each toy module's version, computed afresh (a process computes them once)."""
    code_versions.code_version.cache_clear()
    code_versions.imported_modules.cache_clear()
    return {m: code_versions.code_version(f"toy.{m}", root) for m in ("a", "b", "c", "d")}


def test_a_module_depends_on_what_it_imports_transitively(toy: Path) -> None:
    assert code_versions.module_closure("toy.a", toy) == ["toy", "toy.a", "toy.b", "toy.c"]
    assert code_versions.module_closure("toy.d", toy) == ["toy", "toy.d"]  # os is not the package's


def test_an_edit_changes_the_versions_of_its_importers_only(toy: Path) -> None:
    before = versions(toy)
    assert versions(toy) == before  # a version is a function of the sources
    (toy / "c.py").write_text("Y = 2\n")
    after = versions(toy)
    assert {m for m in before if before[m] != after[m]} == {"a", "b", "c"}


def test_a_module_outside_the_package_is_refused(toy: Path) -> None:
    with pytest.raises(ValueError, match="not a module"):
        code_versions.imported_modules("toy.missing", toy)


def test_imports_read_from_their_statements_are_those_of_the_whole_syntax_tree() -> None:
    """On every module of the package: the import statements found from their text alone include each
    one the whole syntax tree holds (an extra one, a docstring's example, only adds a dependency)."""
    for path in code_versions.PACKAGE_ROOT.rglob("*.py"):
        fast = {ast.dump(n) for n in code_versions.import_nodes(path)}
        full = {ast.dump(n) for n in code_versions.full_import_nodes(path)}
        assert full <= fast, (path, full - fast)


@pytest.mark.parametrize(
    "source",
    [
        "from toy import (  # the list (c) follows\n    c,\n)\n",  # a parenthesis in a comment
        "from toy import \\\n    c\n",  # a continued line
        '"""Usage:\n\nimport what you need: see below."""\nfrom toy import c\n',  # prose like an import
    ],
)
def test_an_import_statement_its_text_cannot_show_is_read_from_the_whole_source(
    toy: Path, source: str
) -> None:
    (toy / "e.py").write_text(source)
    code_versions.imported_modules.cache_clear()
    assert code_versions.module_closure("toy.e", toy) == ["toy", "toy.c", "toy.e"]

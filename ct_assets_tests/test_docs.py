"""Documentation that must not drift: the README sections pyproject.toml points at exist, the versions
the README says were tested fall within pyproject's ranges and cover every dependency, and the README
names every verdict `cycle --json` can print."""

import re
import tomllib

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from ct_assets_tests.helpers.config import CHECKOUT

README = (CHECKOUT / "README.md").read_text(encoding="utf-8")
PYPROJECT_TEXT = (CHECKOUT / "pyproject.toml").read_text(encoding="utf-8")
PYPROJECT = tomllib.loads(PYPROJECT_TEXT)


def section(title: str) -> str:
    """The README's `## title` section, up to the next `## ` heading."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", README, flags=re.M | re.S)
    assert match, f"README has no section {title!r}"
    return match.group(1)


def test_the_readme_sections_pyproject_points_at_exist() -> None:
    pointers = re.findall(r'README(?:\.md)?, "([^"]+)"', PYPROJECT_TEXT)
    assert pointers
    headings = set(re.findall(r"^## (.+)$", README, flags=re.M))
    assert set(pointers) <= headings, sorted(headings)


def test_the_tested_versions_cover_every_dependency_within_its_range() -> None:
    rows = re.findall(r"^\| ([\w.-]+) \| (\d[\w.]*) \|$", section("Versions"), flags=re.M)
    tested = {canonicalize_name(name): version for name, version in rows}
    ranges = {
        canonicalize_name(r.name): r.specifier for r in map(Requirement, PYPROJECT["project"]["dependencies"])
    }
    ranges[canonicalize_name("python")] = SpecifierSet(PYPROJECT["project"]["requires-python"])
    assert set(tested) == set(ranges)
    outside = {name: (v, str(ranges[name])) for name, v in tested.items() if v not in ranges[name]}
    assert outside == {}


def test_the_readme_names_every_verdict_cycle_can_print() -> None:
    cycle = (CHECKOUT / "ct_assets" / "commands" / "cycle.py").read_text(encoding="utf-8")
    verdicts = set(re.findall(r'"verdict"\]? ?[:=] ?"(\w+)"', cycle))
    assert {"promoted", "blocked", "not_triggered", "unchanged", "failed"} <= verdicts
    start = README.index("`cycle --json` prints `verdict` (")
    listing = README[start : README.index("`champion_version`", start)]
    assert {v for v in verdicts if f"`{v}`" not in listing} == set()

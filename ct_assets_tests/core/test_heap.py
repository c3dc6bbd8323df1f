"""The collector around long-lived imports and the exit: paused inside `long_lived()`, everything alive
frozen after it, the collector's previous state restored, and the console script freezing the heap only
once main() has returned."""

from __future__ import annotations

import gc
import sys
import tomllib
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from ct_assets.common import heap

PROBE = "ct_assets_tests_heap_probe"


@pytest.fixture(autouse=True)
def _thawed() -> Iterator[None]:
    """Each test starts and ends with nothing frozen and the collector on (as this process had it)."""
    gc.unfreeze()
    enabled = gc.isenabled()
    yield
    gc.unfreeze()
    if enabled:
        gc.enable()


def test_long_lived_pauses_the_collector_then_freezes_what_is_alive() -> None:
    assert gc.get_freeze_count() == 0
    with heap.long_lived():
        assert not gc.isenabled()
        kept = [{"cycle": None} for _ in range(1000)]
        for d in kept:
            d["cycle"] = d  # a reference cycle: only the collector could free it
        sys.modules[PROBE] = types.ModuleType(PROBE)  # as an import does
    del sys.modules[PROBE]
    assert gc.isenabled()
    assert gc.get_freeze_count() >= len(kept)
    assert all(not any(o is d for o in gc.get_objects()) for d in kept[:3])  # in no generation now


def test_a_block_that_imports_nothing_freezes_nothing() -> None:
    with heap.long_lived():
        garbage = [{"cycle": None} for _ in range(10)]
        for d in garbage:
            d["cycle"] = d
    assert gc.isenabled() and gc.get_freeze_count() == 0
    del garbage
    assert gc.collect() >= 10  # the collector still frees them


def test_long_lived_restores_the_collector_after_an_error_and_leaves_it_off_when_it_was_off() -> None:
    with pytest.raises(ImportError), heap.long_lived():
        import ct_assets_no_such_module  # noqa: F401
    assert gc.isenabled()
    gc.disable()
    with heap.long_lived():
        pass
    assert not gc.isenabled()


def test_objects_frozen_are_still_freed_when_no_longer_referenced() -> None:
    class Probe:
        freed = 0

        def __del__(self) -> None:
            Probe.freed += 1

    with heap.long_lived():
        probe = Probe()
        sys.modules[PROBE] = types.ModuleType(PROBE)
    del sys.modules[PROBE]
    assert gc.get_freeze_count() > 0
    del probe  # reference counting, not the collector
    assert Probe.freed == 1


def test_the_console_script_is_run_and_freezes_only_after_main(monkeypatch: pytest.MonkeyPatch) -> None:
    from ct_assets.cli import main as cli

    pyproject = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    assert pyproject["project"]["scripts"]["ct-assets"] == "ct_assets.cli.main:run"
    frozen_during_main: list[int] = []

    def fake_main(argv: list[str] | None = None) -> int:
        frozen_during_main.append(gc.get_freeze_count())
        return 3

    monkeypatch.setattr(cli, "main", fake_main)
    assert cli.run() == 3
    assert frozen_during_main == [0] and gc.get_freeze_count() > 0

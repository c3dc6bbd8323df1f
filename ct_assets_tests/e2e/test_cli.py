"""End to end: the `ct-assets` command line through subprocesses, on a temporary project (DESIGN.md contract)."""

from __future__ import annotations

import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import polars as pl
import pytest
import tomli_w

from ct_assets_tests.helpers.cli import cli, cli_env, console_script, error_line, ok, one_json
from ct_assets_tests.helpers.config import CHECKOUT

pytestmark = pytest.mark.slow

CYCLE_TIMEOUT = 300  # seconds: one ingest plus one CT run on 60k rows takes about 30 s here
COMMAND_TIMEOUT = 120
REGRESSION_CHECKS = {"challenger_no_regression_golden", "challenger_no_regression_holdout"}
# Paths that change under concurrent work in the same checkout (other test files, tool caches): not ours.
CONCURRENT_NOISE = (
    "ct_assets_tests/",
    ".ruff_cache/",
    ".mypy_cache/",
    ".pytest_cache/",
    ".hypothesis/",
    "__pycache__/",
)


def run(
    project: Path,
    *args: str,
    cwd: Path | None = None,
    config: Path | None = None,
    timeout: int = COMMAND_TIMEOUT,
) -> subprocess.CompletedProcess[str]:
    """`ct-assets ARGS` with no config but the one a test names (the project fixture exports none)."""
    return cli(project, *args, cwd=cwd, config=config, timeout=timeout)


def status(project: Path) -> dict[str, Any]:
    return one_json(ok(run(project, "status", "--json")))


def registry_list(project: Path) -> dict[str, Any]:
    return one_json(ok(run(project, "registry", "list", "--json")))


def checkout_state() -> set[str]:
    """`git status` of the checkout, ignored files included (data/ is ignored), minus concurrent noise."""
    proc = subprocess.run(
        ["git", "status", "--porcelain", "--ignored", "--untracked-files=all"],
        cwd=CHECKOUT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return {
        line
        for line in proc.stdout.splitlines()
        if not any(line[3:].startswith(p) or f"/{p}" in line[3:] for p in CONCURRENT_NOISE)
    }


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


def test_cli_loop_end_to_end(project: Path) -> None:
    """init, simulate, cycle, status, config, a blocked weak challenger, approve, rollback, a refused
    reject, bad files beside a good one, and a next cycle: all through the console script."""
    if not (CHECKOUT / ".git").exists():
        pytest.skip(f"{CHECKOUT} is not a git checkout")
    before = checkout_state()
    data = project / "data"
    landing = data / "landing"

    # init twice: the second changes nothing.
    ok(run(project, "init"))
    assert (data / "warehouse.duckdb").is_file()
    tree = files_under(data)
    ok(run(project, "init"))
    assert files_under(data) == tree

    # simulate prints the three landed paths.
    sim = ok(run(project, "simulate", "--batches", "3", "--rows", "20000", "--seed", "1"))
    paths = [Path(line) for line in sim.stdout.splitlines() if line.strip()]
    assert len(paths) == 3, sim.stdout
    for p in paths:
        p = p if p.is_absolute() else project / p
        assert p.is_file(), p
        assert p.parent.resolve() == landing.resolve(), p

    # The first cycle ingests all three files and promotes a first champion.
    first = one_json(ok(run(project, "cycle", "--json", timeout=CYCLE_TIMEOUT)))
    assert first["verdict"] == "promoted", first
    champion = first["champion_version"]
    assert champion, first
    assert first["challenger_version"] == champion, first
    assert first["failed_checks"] == [], first
    assert first["ingested_files"] == 3, first
    assert first["quarantined_files"] == 0, first

    st = status(project)
    assert st["champion_version"] == champion, st
    assert st["rows_total"] == 60000, st
    assert st["rows_since_training"] == 0, st
    assert st["last_verdict"] == "promoted", st
    assert st["pending_files"] == 0, st

    # The plain status names the champion's figures at four significant digits, not a dict's repr.
    first_line = ok(run(project, "status")).stdout.splitlines()[0]
    golden = st["champion"]["metrics"]["golden"]
    assert f"golden {golden:.4g}" in first_line and "{" not in first_line, first_line

    # init on a live warehouse keeps its data.
    ok(run(project, "init"))
    again = status(project)
    assert (again["champion_version"], again["rows_total"]) == (champion, 60000), again

    # config prints the effective configuration as TOML.
    config = tomllib.loads(ok(run(project, "config")).stdout)
    assert isinstance(config.get("training"), dict), config.keys()

    # A forced cycle under a much weaker [training] is blocked: champion unchanged, exit 0.
    config["training"]["num_iterations"] = 2
    config["training"]["num_leaves"] = 2
    weak_config = project / "weak.toml"
    weak_config.write_text(tomli_w.dumps(config))
    blocked = one_json(
        ok(run(project, "cycle", "--force", "--json", config=weak_config, timeout=CYCLE_TIMEOUT))
    )
    assert blocked["verdict"] == "blocked", blocked
    assert blocked["failed_checks"], blocked
    assert REGRESSION_CHECKS & set(blocked["failed_checks"]), blocked
    assert blocked["champion_version"] == champion, blocked
    weak = blocked["challenger_version"]
    assert weak and weak != champion, blocked
    assert status(project)["champion_version"] == champion

    listing = registry_list(project)
    assert weak in listing["review_queue"], listing
    assert listing["champion_version"] == champion, listing

    # Approving the blocked challenger makes it the champion, with the reason and an actor in the ledger.
    ok(run(project, "registry", "approve", weak, "--reason", "x"))
    assert status(project)["champion_version"] == weak
    listing = registry_list(project)
    assert weak not in listing["review_queue"], listing
    approved = [e for e in listing["ledger"] if e["action"] == "approved" and e["version"] == weak]
    assert len(approved) == 1, listing["ledger"]
    assert approved[0]["reason"] == "x", approved
    assert approved[0]["actor"], approved

    # Rollback brings the previous champion back.
    ok(run(project, "registry", "rollback", "--reason", "y"))
    assert status(project)["champion_version"] == champion
    ledger = registry_list(project)["ledger"]
    assert any(e["reason"] == "y" and e["champion_after"] == champion for e in ledger), ledger

    # Rejecting a version that is not in review is refused on one line and records nothing.
    reject = run(project, "registry", "reject", champion, "--reason", "z")
    error_line(reject)
    assert len(reject.stderr.strip().splitlines()) == 1, reject.stderr
    ledger_after = registry_list(project)["ledger"]
    assert ledger_after == ledger
    assert status(project)["champion_version"] == champion

    # Bad files beside one good file: three quarantined with reasons, the good one ingested.
    rows_before = status(project)["rows_total"]
    good = [
        Path(x)
        for x in ok(
            run(project, "simulate", "--batches", "1", "--rows", "5000", "--seed", "7")
        ).stdout.split()
    ]
    assert len(good) == 1, good
    good_rows = pl.read_parquet(good[0]).head(2000)
    truncated = landing / "bad_truncated.parquet"
    good_rows.write_parquet(truncated)
    truncated.write_bytes(truncated.read_bytes()[: truncated.stat().st_size // 2])
    good_rows.head(100).rename({"tenure_months": "tenure"}).write_csv(landing / "bad_renamed.csv")
    (landing / "bad_empty.csv").write_bytes(b"")
    bad_names = ("bad_truncated.parquet", "bad_renamed.csv", "bad_empty.csv")

    mixed = one_json(ok(run(project, "cycle", "--json", timeout=CYCLE_TIMEOUT)))
    assert mixed["quarantined_files"] == 3, mixed
    assert mixed["ingested_files"] == 1, mixed
    quarantine = data / "quarantine"
    kept = {p.name: p for p in quarantine.iterdir()}
    for name in bad_names:
        assert name in kept, (name, sorted(kept))
        reasons = [p for n, p in kept.items() if n != name and n.startswith(name + ".")]
        assert reasons and all(p.stat().st_size > 0 for p in reasons), (name, sorted(kept))
        assert not (landing / name).exists(), name
    st = status(project)
    assert st["rows_total"] == rows_before + 5000, (rows_before, st)
    assert st["pending_files"] == 0, st

    # The next cycle works: a new good file is ingested and a forced CT run reaches a verdict.
    ok(run(project, "simulate", "--batches", "1", "--rows", "6000", "--seed", "8"))
    after = one_json(ok(run(project, "cycle", "--force", "--json", timeout=CYCLE_TIMEOUT)))
    assert after["ingested_files"] == 1, after
    assert after["quarantined_files"] == 0, after
    assert after["verdict"] in ("promoted", "blocked"), after
    assert after["challenger_version"] not in (None, champion, weak), after
    st = status(project)
    assert st["rows_total"] == rows_before + 11000, st
    assert st["pending_files"] == 0, st
    assert files_under(quarantine) == set(kept), "a later cycle touched the quarantine"

    changed = checkout_state() ^ before
    assert not changed, f"the CLI wrote into the checkout {CHECKOUT}: {sorted(changed)}"


def test_simulate_refuses_zero_batches(project: Path) -> None:
    ok(run(project, "init"))
    line = error_line(run(project, "simulate", "--batches", "0", "--rows", "100"))
    assert "batches" in line, line
    assert not any((project / "data" / "landing").iterdir())


def test_approve_of_an_unknown_version_is_refused(project: Path) -> None:
    ok(run(project, "init"))
    line = error_line(run(project, "registry", "approve", "v9999", "--reason", "x"))
    assert "v9999" in line, line
    listing = registry_list(project)
    assert listing["champion_version"] is None, listing
    assert listing["ledger"] == [], listing


@pytest.mark.parametrize("command", [["status"], ["cycle", "--json"], ["init"]])
def test_missing_config_file_is_refused(project: Path, command: list[str]) -> None:
    missing = project / "missing.toml"
    proc = run(project, *command, config=missing)
    line = error_line(proc)
    assert str(missing) in line, line
    assert proc.stdout.strip() == "", proc.stdout
    assert not (project / "data").exists(), "a command ran on defaults despite a missing config file"


def test_status_before_init_is_refused(project: Path) -> None:
    empty = project / "empty"
    empty.mkdir()
    line = error_line(run(project, "status", "--json", cwd=empty))
    assert "init" in line, line
    assert not any(empty.iterdir()), sorted(files_under(empty))


@pytest.mark.parametrize("command", [["status"], ["status", "--json"], ["config"]])
def test_a_reader_that_closes_early_ends_the_command_quietly(project: Path, command: list[str]) -> None:
    """`ct-assets status | head -3`: when the reader has gone, exit 141 (128 + SIGPIPE) as Unix tools do,
    with nothing on stderr (no error line, no "Exception ignored" from the flush at exit)."""
    ok(run(project, "init"))
    proc = subprocess.Popen(
        [console_script(), *command],
        cwd=project,
        env=cli_env(os.environ["DAGSTER_HOME"]),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away before the command writes its first line
    stderr = proc.stderr.read().decode()
    assert proc.wait(timeout=COMMAND_TIMEOUT) == 141, stderr
    assert stderr == ""

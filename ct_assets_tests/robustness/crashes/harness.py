"""The crash harness: a project copied per case, its commands run as subprocesses (armed with a failpoint
or not), and the invariants that must hold after any crash and any rerun."""

import fcntl
import hashlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import duckdb
import pytest

from ct_assets.common import failpoints
from ct_assets.config import load_settings
from ct_assets.core.modeling import model as lgbm
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.cli import cli, ok
from ct_assets_tests.helpers.runs import tick as tick_sensor

# A rerun that waited on anything the dead process held would wait out a lock timeout (900 s for the
# writer and ingest locks here, [guardrails] max_run_seconds = 3600 s for the training lock): far longer
# than a rerun may take.
LOCK_TIMEOUT = 900
PROMPT_SECONDS = 180
COMMAND_TIMEOUT = 300
BASE_FILES, BASE_ROWS = 2, 3000  # ingested and trained on: champion v0001
NEW_FILES, NEW_ROWS = 2, 1500  # waiting in the landing folder: enough labelled rows for a retrain
RECOVERED = "was left running by a killed process; marked failed"
LIVE = (dg.DagsterRunStatus.STARTED, dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.NOT_STARTED)


@dataclass
class Project:
    root: Path

    @property
    def config(self) -> Path:
        return self.root / "crash.toml"

    @property
    def home(self) -> Path:
        return self.root / "dagster_home"

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def warehouse(self) -> Path:
        return self.data / "warehouse.duckdb"

    @property
    def models(self) -> Path:
        return self.data / "models"

    @property
    def landing(self) -> Path:
        return self.data / "landing"

    def run(
        self, *args: str, failpoint: str | None = None, config: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return cli(
            self.root,
            *args,
            config=config or self.config,
            home=self.home,
            extra_env={failpoints.ENV: failpoint} if failpoint else None,
            timeout=COMMAND_TIMEOUT,
        )

    def ok(self, *args: str, config: Path | None = None) -> subprocess.CompletedProcess[str]:
        return ok(self.run(*args, config=config))

    def killed(
        self, *args: str, failpoint: str, config: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run a command armed with `failpoint`; it must die there, by SIGKILL."""
        proc = self.run(*args, failpoint=failpoint, config=config)
        assert proc.returncode == -signal.SIGKILL, (
            f"{args} with {failpoint} exited {proc.returncode} instead of dying by SIGKILL\n"
            f"{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
        )
        return proc

    def cycle(
        self, config: Path | None = None
    ) -> tuple[dict[str, Any], subprocess.CompletedProcess[str], float]:
        started = time.monotonic()
        proc = self.ok("cycle", "--json", config=config)
        lines = [line for line in proc.stdout.splitlines() if line.strip()]
        assert len(lines) == 1, proc.stdout
        return json.loads(lines[0]), proc, time.monotonic() - started

    @contextmanager
    def db(self) -> Iterator[duckdb.DuckDBPyConnection]:
        con = duckdb.connect(str(self.warehouse), read_only=True)
        try:
            yield con
        finally:
            con.close()

    def rows(self, sql: str, params: list | None = None) -> list[tuple]:
        with self.db() as con:
            return con.execute(sql, params or []).fetchall()

    def value(self, sql: str, params: list | None = None) -> Any:
        return self.rows(sql, params)[0][0]

    def champion(self) -> str | None:
        rows = self.rows("SELECT champion_after FROM ledger ORDER BY entry_id DESC LIMIT 1")
        return rows[0][0] if rows else None

    def model_folders(self) -> set[str]:
        return {p.name for p in self.models.iterdir() if lgbm.VERSION_PATTERN.fullmatch(p.name)}

    @contextmanager
    def instance(self) -> Iterator[dg.DagsterInstance]:
        with dg.DagsterInstance.from_config(str(self.home)) as inst:
            yield inst

    def runs(self) -> dict[str, tuple[str, dg.DagsterRunStatus]]:
        with self.instance() as inst:
            return {r.run_id: (r.job_name, r.status) for r in inst.get_runs(limit=1000)}


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def live_runs(p: Project) -> dict[str, str]:
    return {rid: job for rid, (job, st) in p.runs().items() if st in LIVE}


def locks_free(p: Project) -> list[str]:
    """Every lock file beside the warehouse can be taken at once (no process holds it)."""
    names = []
    for lock in sorted(p.data.glob("*.lock")):
        fd = os.open(lock, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # raises BlockingIOError if held
            fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)
        names.append(lock.name)
    return names


INGEST_ONLY = "ingest_only.toml"  # the same project with retraining switched off: `cycle` only ingests


@dataclass
class Bases:
    waiting: Path  # champion v0001; two more files waiting in the landing folder
    ingested: Path  # the same, with the two files ingested and a retrain due
    landed: dict[str, int]  # content hash -> rows, of every file landed
    old: set[str]  # content hashes of the files v0001 was trained on
    waiting_files: list[str]  # names of the two waiting files


@contextmanager
def inside(p: Project, config: Path | None = None) -> Iterator[None]:
    """This process in the project, as the CLI would be (for the few steps done in-process)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(p.root)
        mp.setenv("DAGSTER_HOME", str(p.home))
        mp.setenv("CT_ASSETS_CONFIG", str(config or p.config))
        mp.delenv(failpoints.ENV, raising=False)
        yield


def cycle_in_process(p: Project, config: Path | None = None) -> dict[str, Any]:
    from ct_assets.commands.cycle import run_cycle

    with inside(p, config):
        return run_cycle(load_settings(config or p.config))


def land(p: Project, batches: int, rows: int, seed: int) -> dict[Path, str]:
    with inside(p):
        paths = simulate(load_settings(p.config), SimulationOptions(batches=batches, rows=rows, seed=seed))
    return {path: sha256(path) for path in paths}


def copy_of(src: Path, tmp_path: Path) -> Project:
    root = tmp_path / "proj"
    shutil.copytree(src, root, symlinks=True)
    return Project(root)


def check_invariants(p: Project, b: Bases, *, ingested: set[str]) -> dict[str, Any]:
    """What must hold after any crash and after any rerun. Returns a few figures for the caller."""
    # Every ingested file's rows are in raw_deltas exactly once; one 'ingested' log row per content.
    per_hash = p.rows(
        "SELECT file_hash, count(*), sum(rows) FROM ingest_log WHERE status = 'ingested' GROUP BY 1"
    )
    assert {h for h, _, _ in per_hash} == ingested, per_hash
    assert all(n == 1 for _, n, _ in per_hash), f"a file was ingested twice: {per_hash}"
    assert all(int(r) == b.landed[h] for h, _, r in per_hash), per_hash
    expected_rows = sum(b.landed[h] for h in ingested)
    total, distinct_ids, batches = p.rows(
        "SELECT count(*), count(DISTINCT row_id), count(DISTINCT _batch_id) FROM raw_deltas"
    )[0]
    assert total == expected_rows == distinct_ids, (total, distinct_ids, expected_rows)
    assert batches == len(ingested)
    orphan_batches = p.value(
        "SELECT count(*) FROM (SELECT DISTINCT _batch_id FROM raw_deltas) d WHERE NOT EXISTS "
        "(SELECT 1 FROM ingest_log l WHERE l.batch_id = d._batch_id AND l.status = 'ingested')"
    )
    assert orphan_batches == 0

    # No ledger, models or validations row names a model whose folder is missing or incomplete.
    named = {
        v
        for (v,) in p.rows(
            "SELECT version FROM ledger UNION SELECT champion_before FROM ledger "
            "UNION SELECT champion_after FROM ledger UNION SELECT version FROM models "
            "UNION SELECT challenger_version FROM validations UNION SELECT champion_version FROM validations"
        )
        if v is not None
    }
    for version in named:
        loaded = lgbm.load_version(p.models, version)  # both files there, model.txt's SHA-256 as in the card
        assert loaded.card["version"] == version
    registered = dict(p.rows("SELECT version, model_sha256 FROM models"))
    assert set(registered) <= p.model_folders()
    for version, digest in registered.items():
        assert digest == sha256(p.models / version / lgbm.MODEL_FILE), version

    # The ledger is one chain: each row starts from the champion the previous row left.
    chain = p.rows("SELECT champion_before, champion_after FROM ledger ORDER BY entry_id")
    for (_, after), (before, _) in itertools.pairwise(chain):
        assert before == after, chain
    champion = p.champion()
    assert champion is not None, "no champion, although there was one"
    return {"rows": total, "champion": champion, "registered": set(registered)}


def assert_recovered(p: Project, proc: subprocess.CompletedProcess[str] | None, dead: set[str]) -> None:
    """The dead process's runs are failed (by the rerun, when `proc` is given), and none looks alive."""
    if proc is not None:
        assert RECOVERED in proc.stderr, proc.stderr[-2000:]
    runs = p.runs()
    for rid in dead:
        assert runs[rid][1] == dg.DagsterRunStatus.FAILURE, (rid, runs[rid])
    assert not live_runs(p), live_runs(p)


def tick(p: Project, sensor: str) -> Any:
    """Evaluate a sensor once in this process, on the project, as the daemon would."""
    with inside(p), p.instance() as inst:
        return tick_sensor(sensor, inst)[0]

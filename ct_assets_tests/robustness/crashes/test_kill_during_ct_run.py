"""Crashes: the real `ct-assets` process is killed with SIGKILL at named points (ct_assets.common.failpoints),
then the same command is run again without the failpoint. The rerun must finish promptly (nothing the
dead process held blocks it: file locks die with their process, a Dagster run it left STARTED is marked
failed), and the warehouse, the models folder, the ledger and the Dagster instance must tell one
consistent story: every landed file's rows exactly once, no ledger or models row naming an incomplete
model folder, a champion that is the old one or the new one (never none), version numbers that step
over folders left by the dead process.

The starting states are built once per module, in this process: a promoted champion (v0001) with two
more files waiting in the landing folder; the same with those files ingested and a retrain due; and the
same after that retrain (champion v0002). Every case works on its own copy of one of them, and only the
commands under test run as subprocesses. The gate is made lenient so that every CT run reaches promotion.
"""

import fcntl
import hashlib
import itertools
import json
import os
import shutil
import signal
import socket
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

from ct_assets.commands import runs
from ct_assets.common import failpoints
from ct_assets.config import Settings, load_settings
from ct_assets.core.modeling import model as lgbm
from ct_assets.definitions import defs
from ct_assets.store.warehouse import init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.cli import cli, ok
from ct_assets_tests.helpers.config import small, write_config
from ct_assets_tests.helpers.runs import tick as tick_sensor

pytestmark = pytest.mark.slow

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

landing_sensor = defs.get_sensor_def("landing_sensor")
retrain_sensor = defs.get_sensor_def("retrain_sensor")


# ----------------------------------------------------------------------------------------- plumbing


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


# ---------------------------------------------------------------------------------- the shared bases

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


@pytest.fixture(scope="module")
def bases(tmp_path_factory: pytest.TempPathFactory) -> Bases:
    """Built once, in this process (the steps under test run as killed subprocesses on copies)."""
    root = tmp_path_factory.mktemp("crash")
    p = Project(root / "waiting")
    p.root.mkdir()
    tables = small(
        ingest={"lock_timeout_seconds": LOCK_TIMEOUT},
        retrain={"cooldown_minutes": 0},
        # A lenient gate: every challenger here passes, so every run reaches the promotion step.
        gate={"tolerance": 0.5, "slice_tolerance": 0.5, "metric_floor": 0.5, "bootstrap_resamples": 50},
    )
    write_config(p.config, tables)
    no_retrain = {"min_new_rows": 10**9, "decay_margin": 1.0, "max_champion_age_hours": 0}
    write_config(p.root / INGEST_ONLY, {**tables, "retrain": {**tables["retrain"], **no_retrain}})
    with inside(p):
        init_warehouse(load_settings(p.config))
    old = land(p, BASE_FILES, BASE_ROWS, seed=1)
    out = cycle_in_process(p)
    assert out["verdict"] == "promoted" and out["champion_version"] == "v0001", out
    new = land(p, NEW_FILES, NEW_ROWS, seed=2)
    landed = {h: BASE_ROWS for h in old.values()} | {h: NEW_ROWS for h in new.values()}
    assert len(landed) == BASE_FILES + NEW_FILES
    assert not live_runs(p)

    ingested = Project(root / "ingested")
    shutil.copytree(p.root, ingested.root, symlinks=True)
    out = cycle_in_process(ingested, ingested.root / INGEST_ONLY)
    assert out["ingested_files"] == NEW_FILES and out["verdict"] == "not_triggered", out
    return Bases(p.root, ingested.root, landed, set(old.values()), sorted(path.name for path in new))


def copy_of(src: Path, tmp_path: Path) -> Project:
    root = tmp_path / "proj"
    shutil.copytree(src, root, symlinks=True)
    return Project(root)


# ------------------------------------------------------------------------------------ the invariants


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


def tick(p: Project, sensor: dg.SensorDefinition) -> Any:
    """Evaluate a sensor once in this process, on the project, as the daemon would."""
    with inside(p), p.instance() as inst:
        return tick_sensor(sensor, inst)[0]


# ---------------------------------------------------------------------------------------- the cases


@pytest.mark.parametrize("point", ["ingest.before_commit", "ingest.after_commit"])
def test_kill_during_ingest(bases: Bases, tmp_path: Path, point: str) -> None:
    """Killed in the first waiting file's transaction (before or after its commit): the rerun ingests
    each file once; a committed file found again in the landing folder is logged as a duplicate."""
    p = copy_of(bases.waiting, tmp_path)
    only = p.root / INGEST_ONLY
    first = p.landing / bases.waiting_files[0]
    first_hash = sha256(first)

    p.killed("cycle", "--json", failpoint=point, config=only)
    dead = live_runs(p)
    assert list(dead.values()) == ["ingest_job"], dead
    assert locks_free(p)
    committed = point == "ingest.after_commit"
    left = check_invariants(p, bases, ingested=bases.old | ({first_hash} if committed else set()))
    assert left["rows"] == BASE_FILES * BASE_ROWS + (NEW_ROWS if committed else 0)
    assert first.exists(), "the file left the landing folder although the process died before moving it"
    assert left["champion"] == "v0001"

    if committed:
        # The landing sensor is not held up by the dead run: it requests an ingest run (and marks the
        # dead one failed).
        request = tick(p, landing_sensor)
        assert isinstance(request, dg.RunRequest), request
        assert_recovered(p, None, set(dead))
    out, proc, seconds = p.cycle(config=only)
    assert_recovered(p, None if committed else proc, set(dead))
    after = check_invariants(p, bases, ingested=set(bases.landed))
    assert after["rows"] == BASE_FILES * BASE_ROWS + NEW_FILES * NEW_ROWS
    assert out["ingested_files"] == NEW_FILES - committed, out
    assert out["duplicate_files"] == int(committed), out
    duplicates = p.value(
        "SELECT count(*) FROM ingest_log WHERE status = 'duplicate' AND file_hash = ?", [first_hash]
    )
    assert duplicates == int(committed)
    assert not [f for f in p.landing.iterdir() if not f.name.startswith(".")]
    assert (p.data / "archive" / first.name).is_file()
    assert after["champion"] == "v0001"
    assert seconds < PROMPT_SECONDS
    print(
        f"\n{point}: left rows={left['rows']}; rerun {out['ingested_files']} ingested, "
        f"{out['duplicate_files']} duplicate, rows={after['rows']} in {seconds:.1f} s"
    )


# point -> (model folders after the kill, versions registered in `models`, champion after the kill)
CT_POINTS: dict[str, tuple[set[str], set[str], str]] = {
    "train.during": ({"v0001"}, {"v0001"}, "v0001"),
    "model.during_save": ({"v0001"}, {"v0001"}, "v0001"),
    "model.after_save": ({"v0001", "v0002"}, {"v0001"}, "v0001"),
    "validate.before_ledger": ({"v0001", "v0002"}, {"v0001", "v0002"}, "v0001"),
    "promote.before_commit": ({"v0001", "v0002"}, {"v0001", "v0002"}, "v0001"),
    "promote.after_commit": ({"v0001", "v0002"}, {"v0001", "v0002"}, "v0002"),
}


@pytest.mark.parametrize("point", list(CT_POINTS))
def test_kill_during_ct_run(bases: Bases, tmp_path: Path, point: str) -> None:
    """Killed inside the CT run: the champion is still the old one or already the new one; the rerun
    retrains (unless the new champion was committed), numbering above every folder left behind."""
    p = copy_of(bases.ingested, tmp_path)
    folders, registered, champion = CT_POINTS[point]
    p.killed("cycle", "--json", failpoint=point)
    dead = live_runs(p)
    assert list(dead.values()) == ["ct_job"], dead
    assert locks_free(p)
    left = check_invariants(p, bases, ingested=set(bases.landed))
    assert p.model_folders() == folders
    assert left["registered"] == registered
    assert left["champion"] == champion
    leftovers = sorted(x.name for x in p.models.iterdir() if x.name not in folders)
    if point == "model.during_save":
        assert len(leftovers) == 1 and leftovers[0].startswith(".tmp-v0002-"), leftovers
        assert (p.models / leftovers[0] / lgbm.MODEL_FILE).is_file()
        assert not (p.models / leftovers[0] / lgbm.CARD_FILE).exists()
    else:
        assert leftovers == []
    if point == "validate.before_ledger":
        assert p.rows("SELECT count(*) FROM validations WHERE challenger_version = 'v0002'") == [(0,)]
    if point == "promote.before_commit":
        assert p.rows("SELECT passed FROM validations WHERE challenger_version = 'v0002'") == [(True,)]

    if point == "train.during":
        # The retrain sensor is not held up by the dead CT run: it requests the run that is due.
        request = tick(p, retrain_sensor)
        assert isinstance(request, dg.RunRequest), request
        assert_recovered(p, None, set(dead))
    out, proc, seconds = p.cycle()
    assert_recovered(p, None if point == "train.during" else proc, set(dead))
    after = check_invariants(p, bases, ingested=set(bases.landed))
    assert seconds < PROMPT_SECONDS
    print(
        f"\n{point}: left folders={sorted(folders)} registered={sorted(registered)} champion={champion} "
        f"leftovers={leftovers}; rerun {out['verdict']} challenger={out['challenger_version']} "
        f"champion={out['champion_version']} in {seconds:.1f} s"
    )
    assert out["ingested_files"] == 0, out
    assert not [x.name for x in p.models.iterdir() if x.name.startswith(".tmp-")], (
        "a temporary folder is left"
    )
    if point == "promote.after_commit":
        # The promotion was committed: no retrain is due any more, and the new champion stands.
        assert out["verdict"] == "not_triggered", out
        assert after["champion"] == "v0002"
        assert p.model_folders() == folders
        return
    new = "v0002" if "v0002" not in folders else "v0003"
    assert (out["verdict"], out["challenger_version"], out["champion_version"]) == ("promoted", new, new), out
    assert after["champion"] == new
    assert p.model_folders() == folders | {new}
    if "v0002" in folders and "v0002" not in registered:
        # The complete folder the dead process never registered is skipped, not reused, named nowhere.
        assert p.value("SELECT count(*) FROM ledger WHERE 'v0002' IN (version, champion_after)") == 0


@pytest.fixture(scope="module")
def promoted(bases: Bases, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The ingested base after its retrain: champion v0002, v0001 before it."""
    p = copy_of(bases.ingested, tmp_path_factory.mktemp("crash_promoted"))
    out = cycle_in_process(p)
    assert out["verdict"] == "promoted" and out["champion_version"] == "v0002", out
    return p.root


@pytest.mark.parametrize("point", ["promote.before_commit", "promote.after_commit"])
def test_kill_during_rollback(bases: Bases, promoted: Path, tmp_path: Path, point: str) -> None:
    """`registry rollback` killed around its commit: the champion is v0002 or v0001, never none; run
    again, it rolls back, or says v0001 already is the champion, and the ledger holds one rollback."""
    p = copy_of(promoted, tmp_path)
    p.killed("registry", "rollback", "--to", "v0001", "--reason", "crash test", failpoint=point)
    dead = live_runs(p)
    assert list(dead.values()) == ["registry_job"], dead
    assert locks_free(p)
    committed = point == "promote.after_commit"
    assert check_invariants(p, bases, ingested=set(bases.landed))["champion"] == (
        "v0001" if committed else "v0002"
    )

    started = time.monotonic()
    proc = p.run("registry", "rollback", "--to", "v0001", "--reason", "crash test")
    seconds = time.monotonic() - started
    assert seconds < PROMPT_SECONDS
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    if committed:
        assert proc.returncode == 1, proc.stderr
        assert "v0001 is already the champion" in proc.stderr, proc.stderr
    else:
        assert proc.returncode == 0, proc.stderr
    assert_recovered(p, proc, set(dead))
    assert check_invariants(p, bases, ingested=set(bases.landed))["champion"] == "v0001"
    assert p.value("SELECT count(*) FROM ledger WHERE action = 'rolled_back'") == 1
    print(f"\nrollback {point}: rerun rc={proc.returncode} in {seconds:.1f} s: {proc.stderr.strip()[-200:]}")


def status(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus:
    run = instance.get_run_by_id(run_id)
    assert run is not None, run_id
    return run.status


def test_only_runs_of_dead_processes_are_recovered(warehouse: Settings, instance: dg.DagsterInstance) -> None:
    """A STARTED run tagged by a `ct-assets` process that is still alive keeps the landing sensor
    waiting; once that process is gone, the next tick marks the run failed and requests an ingest run.
    Runs without the CLI's tags (launched by the daemon) are left to Dagster's run monitoring."""
    simulate(warehouse, SimulationOptions(batches=1, rows=300, seed=3))
    job = defs.resolve_job_def("ingest_job")
    sleeper = subprocess.Popen(["sleep", "60"])
    try:
        tags = {runs.PID_TAG: str(sleeper.pid), runs.HOST_TAG: socket.gethostname()}
        held = instance.create_run_for_job(job_def=job, status=dg.DagsterRunStatus.STARTED, tags=tags)
        waiting, _ = tick_sensor(landing_sensor, instance)
        assert isinstance(waiting, dg.SkipReason) and "in flight" in (waiting.skip_message or "")
        assert status(instance, held.run_id) == dg.DagsterRunStatus.STARTED
    finally:
        sleeper.kill()
        sleeper.wait()
    assert isinstance(tick_sensor(landing_sensor, instance)[0], dg.RunRequest)
    assert status(instance, held.run_id) == dg.DagsterRunStatus.FAILURE
    assert runs.recover_dead_runs(instance) == []  # nothing left to recover
    other = instance.create_run_for_job(job_def=job, status=dg.DagsterRunStatus.STARTED)
    assert runs.recover_dead_runs(instance) == []
    assert status(instance, other.run_id) == dg.DagsterRunStatus.STARTED

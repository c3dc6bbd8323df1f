"""`ct-assets backtest`: a small replay through the real loop (4 simulated deltas of 2,000 rows, a small
config) checked against figures computed here from the delta files themselves, the isolation of the
user's project, the policies' bookkeeping, and the one-line errors."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import polars as pl
import pytest
import tomli_w
from scipy.stats import mannwhitneyu

from ct_assets.cli.main import main
from ct_assets.config import load_settings
from ct_assets.core.modeling import model as lgbm
from ct_assets.tools import backtest_data
from ct_assets.tools.backtest import (
    Backtest,
    StepRecord,
    StepResult,
    assign_policies,
    delta_files,
    evaluate,
    scratch_config,
    wall_clock_notes,
)
from ct_assets.tools.backtest_report import Progress, format_table, render_html
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.config import small, write_config

FILES, ROWS = 4, 2000
ENV_KEYS = ("DAGSTER_HOME", "CT_ASSETS_CONFIG")
JSON_KEYS = {
    "served_mean",
    "always_promote_mean",
    "never_retrain_mean",
    "every_n_mean",
    "steps",
    "per_step",
    "html",
    "skipped",
}


# ------------------------------------------------------------------------------------------- helpers


@contextlib.contextmanager
def captured_fds(out: Path, err: Path) -> Iterator[None]:
    """stdout and stderr of this process (Python and C alike) into files, for the duration."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with out.open("w") as fo, err.open("w") as fe:
        os.dup2(fo.fileno(), 1)
        os.dup2(fe.fileno(), 2)
        try:
            with contextlib.redirect_stdout(fo), contextlib.redirect_stderr(fe):
                yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])


def snapshot(*roots: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime in ns) of every file below the roots."""
    out = {}
    for root in roots:
        for p in sorted(root.rglob("*")):
            if p.is_file():
                st = p.stat()
                out[str(p)] = (st.st_size, st.st_mtime_ns)
    return out


def auc(y: np.ndarray, p: np.ndarray) -> float:
    """ROC AUC as the Mann-Whitney U statistic over (positives x negatives): not the project's code."""
    u = mannwhitneyu(p[y == 1], p[y == 0], alternative="two-sided").statistic
    return float(u) / (int((y == 1).sum()) * int((y == 0).sum()))


# ------------------------------------------------------------------------------------- the one replay


@pytest.fixture(scope="module")
def replay(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A user project (its own warehouse and DAGSTER_HOME, initialised), 4 simulated delta files in a
    folder of their own, and `ct-assets backtest DELTAS --json --workdir WORK` run in this process."""
    root = tmp_path_factory.mktemp("backtest")
    user = root / "user"
    user.mkdir()
    # A point gate with a small tolerance: on this stream (seed 3) the loop both blocks and promotes,
    # so the policies serve different models at the scored steps (the tests do not depend on which).
    tables = small(gate={"rule": "point", "tolerance": 0.005})
    tables["paths"] = {k: str(user / "data" / k) for k in ("landing", "quarantine", "archive", "models")}
    tables["paths"].update(
        warehouse=str(user / "data" / "warehouse.duckdb"),
        reports=str(user / "data" / "reports"),
        state=str(user / "data" / "state"),
    )
    config = write_config(user / "user.toml", tables)
    home = user / "dagster_home"
    deltas, work = root / "deltas", root / "work"
    sim = write_config(
        root / "sim.toml", {**small(), "paths": {"landing": str(deltas), "state": str(root / "simstate")}}
    )
    simulate(load_settings(sim), SimulationOptions(batches=FILES, rows=ROWS, seed=3))
    out, err = root / "stdout.txt", root / "stderr.txt"
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(user)
        mp.setenv("CT_ASSETS_CONFIG", str(config))
        mp.setenv("DAGSTER_HOME", str(home))
        with captured_fds(root / "init.out", root / "init.err"):
            assert main(["init"]) == 0
        before = snapshot(user)
        env_before = {k: os.environ.get(k) for k in ENV_KEYS}
        with captured_fds(out, err):
            code = main(["backtest", str(deltas), "--json", "--workdir", str(work)])
        env_after = {k: os.environ.get(k) for k in ENV_KEYS}
        after = snapshot(user)
    return {
        "code": code,
        "stdout": out.read_text(),
        "stderr": err.read_text(),
        "deltas": deltas,
        "work": work,
        "before": before,
        "after": after,
        "env_before": env_before,
        "env_after": env_after,
        "user": user,
    }


@pytest.fixture(scope="module")
def result(replay: dict[str, Any]) -> dict[str, Any]:
    assert replay["code"] == 0, replay["stderr"][-3000:]
    lines = [line for line in replay["stdout"].splitlines() if line.strip()]
    assert len(lines) == 1, f"expected one JSON line on stdout, got:\n{replay['stdout'][-2000:]}"
    return json.loads(lines[0])


@pytest.mark.slow
def test_json_has_the_contract_keys_and_one_scored_step_per_file_but_the_last(result: dict) -> None:
    assert set(result) >= JSON_KEYS, JSON_KEYS - set(result)
    assert result["steps"] == FILES - 1
    assert result["skipped"] == 0
    assert len(result["per_step"]) == FILES
    assert [s["scored"] for s in result["per_step"]] == [True] * (FILES - 1) + [False]
    for policy in ("served", "always_promote", "never_retrain", "every_n"):
        values = [s[policy] for s in result["per_step"] if s["scored"]]
        assert result[f"{policy}_mean"] == pytest.approx(float(np.mean(values)))
        assert all(0.5 < v <= 1.0 for v in values), (policy, values)


@pytest.mark.slow
def test_every_policys_metric_is_its_models_metric_on_the_next_files_rows(result: dict, replay: dict) -> None:
    """Recomputed here, for each scored step and policy: the model file of the version the policy
    names, the next delta file read with polars (rows with a label), AUC as Mann-Whitney U. And
    never_retrain names the first champion throughout."""
    files = sorted(replay["deltas"].glob("*.parquet"))
    first = result["per_step"][0]["champion_version"]
    assert first is not None and result["per_step"][0]["verdict"] == "promoted"
    models: dict[str, lgbm.LoadedModel] = {}
    for k, step in enumerate(result["per_step"][:-1]):
        assert step["never_retrain_version"] == first
        rows = pl.read_parquet(files[k + 1]).filter(pl.col("label").is_not_null())
        y = rows["label"].to_numpy()
        assert step["next_rows"] == rows.height
        for policy in ("served", "always_promote", "never_retrain", "every_n"):
            version = step[f"{policy}_version"]
            model = models.setdefault(version, lgbm.load(replay["work"] / "models" / version))
            assert step[policy] == pytest.approx(auc(y, model.predict(rows)), abs=1e-12), (k + 1, policy)


@pytest.mark.slow
def test_policies_follow_the_loops_decisions(result: dict, replay: dict) -> None:
    steps = result["per_step"]
    first = steps[0]["champion_version"]
    for s in steps:
        assert s["served_version"] == s["champion_version"]
        if s["challenger_version"]:  # no exclusions today: always-promote serves the loop's challenger
            assert s["always_promote_version"] == s["challenger_version"]
    # every_n with N = 3: the first champion at steps 1 and 2, the always-promote model of step 3 after
    assert [s["every_n_version"] for s in steps] == [first, first] + [steps[2]["always_promote_version"]] * 2
    with duckdb.connect(str(replay["work"] / "warehouse.duckdb"), read_only=True) as con:
        promoted = {
            v for (v,) in con.execute("SELECT version FROM ledger WHERE action = 'promoted'").fetchall()
        }
    assert promoted == {s["challenger_version"] for s in steps if s["verdict"] == "promoted"}


@pytest.mark.slow
def test_the_users_project_and_environment_are_untouched(replay: dict, result: dict) -> None:
    assert replay["before"] == replay["after"], "the backtest wrote into the user's project"
    assert replay["env_before"] == replay["env_after"]
    assert not (replay["user"] / "data" / "models").exists() or not any(
        (replay["user"] / "data" / "models").iterdir()
    )
    assert (replay["work"] / "warehouse.duckdb").is_file()
    assert Path(result["html"]) == replay["work"].resolve() / "backtest.html"


@pytest.mark.slow
def test_progress_goes_to_stderr_one_line_per_step_when_not_a_terminal(replay: dict) -> None:
    lines = [line for line in replay["stderr"].splitlines() if line.startswith("backtest [")]
    assert len(lines) == FILES, replay["stderr"][-2000:]
    assert "Traceback" not in replay["stderr"]
    assert "ingest_job run" not in replay["stderr"]  # the loop's own lines go to the scratch log
    assert "ingest_job run" in (replay["work"] / "backtest.log").read_text()


@pytest.mark.slow
def test_html_page_is_self_contained(result: dict) -> None:
    page = Path(result["html"]).read_text()
    assert "<svg" in page and "<polyline" in page
    assert "<script" not in page and "src=" not in page
    assert "http" not in page.replace("http://www.w3.org/2000/svg", "")


@pytest.mark.slow
def test_always_promote_trains_its_own_model_when_batches_were_excluded(
    replay: dict, result: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A data set that records excluded batches makes the baseline train on the same window without
    them. Nothing was really excluded here, so its model must be the loop's challenger byte for byte
    (same rows, same canonical order, same parameters), and score the same."""
    work = replay["work"]
    real = backtest_data.load_dataset

    def with_exclusions(con: duckdb.DuckDBPyConnection, dataset_hash: str) -> Any:
        return dataclasses.replace(real(con, dataset_hash), excluded_batches=(1,))

    monkeypatch.setattr(backtest_data, "load_dataset", with_exclusions)
    settings = load_settings(work / "config.toml")
    records = [StepRecord.from_json(r) for r in json.loads((work / "steps.json").read_text())]
    bt = evaluate(settings, records, every=3, baseline_dir=tmp_path)
    trained = [s["challenger_version"] for s in result["per_step"] if s["challenger_version"]]
    assert sorted(bt.own_models) == sorted(trained)
    for v in trained:
        assert (tmp_path / v / "model.txt").read_bytes() == (work / "models" / v / "model.txt").read_bytes()
    for mine, theirs in zip(bt.steps, result["per_step"], strict=True):
        assert mine.excluded_batches == [1]
        assert mine.metrics["always_promote"] == theirs["always_promote"]
    assert "*" in format_table(bt)


@pytest.mark.slow
def test_a_step_whose_next_batch_has_no_labels_is_skipped_and_counted(replay: dict, tmp_path: Path) -> None:
    """The labels as known at the end: with batch 3's labels gone, step 2 has nothing to be scored on."""
    work = replay["work"]
    raw = scratch_config(load_settings(work / "config.toml"), work)
    raw["paths"]["warehouse"] = str(tmp_path / "copy.duckdb")
    shutil.copyfile(work / "warehouse.duckdb", tmp_path / "copy.duckdb")
    with duckdb.connect(str(tmp_path / "copy.duckdb")) as con:
        con.execute("UPDATE raw_deltas SET label = NULL WHERE _batch_id = 3")
    (tmp_path / "c.toml").write_text(tomli_w.dumps(raw))
    settings = load_settings(tmp_path / "c.toml")
    records = [StepRecord.from_json(r) for r in json.loads((work / "steps.json").read_text())]
    data = evaluate(settings, records, every=3, baseline_dir=tmp_path / "own").to_json()
    assert data["steps"] == FILES - 2
    assert data["skipped"] == 1
    assert data["skipped_steps"][0]["step"] == 2
    assert "no labelled rows" in data["skipped_steps"][0]["reason"]


# ------------------------------------------------------------------------------------- one-line errors


def test_an_empty_folder_is_a_one_line_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".hidden.parquet").write_text("")
    (empty / "landing.parquet.part").write_text("")
    env = {k: v for k, v in os.environ.items() if k not in ENV_KEYS}
    env["DAGSTER_HOME"] = str(tmp_path / "home")
    cli = Path(sys.executable).parent / "ct-assets"
    proc = subprocess.run(
        [str(cli), "backtest", str(empty), "--json"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert lines == [f"ct-assets: error: no delta files (*.parquet, *.csv) in {empty}"], proc.stderr
    assert not (tmp_path / "home").exists() and not (tmp_path / "data").exists()


@pytest.mark.parametrize(
    ("files", "message"),
    [(None, "does not exist"), ([], "no delta files"), (["a.csv"], "only one delta file")],
)
def test_bad_folders_are_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], files: list[str] | None, message: str
) -> None:
    folder = tmp_path / "deltas"
    if files is not None:
        folder.mkdir()
        for name in files:
            (folder / name).write_text("x\n")
    assert main(["backtest", str(folder)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


def test_an_occupied_workdir_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deltas = tmp_path / "deltas"
    deltas.mkdir()
    for name in ("a.csv", "b.csv"):
        (deltas / name).write_text("x\n")
    work = tmp_path / "work"
    work.mkdir()
    (work / "warehouse.duckdb").write_text("")
    assert main(["backtest", str(deltas), "--workdir", str(work)]) == 1
    assert "is not an empty folder" in capsys.readouterr().err


# ------------------------------------------------------------------------------------ the plain parts


def test_delta_files_are_the_ready_ones_in_name_order(tmp_path: Path) -> None:
    for name in ("b.parquet", "a.CSV", "c.csv", ".d.csv", "e.csv.part", "f.txt"):
        (tmp_path / name).write_text("")
    (tmp_path / "sub.csv").mkdir()
    assert [p.name for p in delta_files(tmp_path)] == ["a.CSV", "b.parquet", "c.csv"]


def test_scratch_config_moves_every_path_and_keeps_the_rest(make_settings: Any, tmp_path: Path) -> None:
    s = make_settings(**small(), alerts={"webhook_url": "https://hooks.example.invalid/ops"})
    raw = scratch_config(s, tmp_path / "scratch")
    paths = {"warehouse", "landing", "quarantine", "archive", "models", "reports", "state"}
    assert set(raw["paths"]) >= paths
    assert all(Path(v).is_relative_to(tmp_path / "scratch") for v in raw["paths"].values())
    assert raw["alerts"]["webhook_url"] == ""  # a replayed block pages no one
    assert s.raw["alerts"]["webhook_url"]  # the user's settings are left as they are
    same = {k: v for k, v in s.raw.items() if k not in ("paths", "alerts")}
    assert {k: v for k, v in raw.items() if k not in ("paths", "alerts")} == same
    (tmp_path / "scratch.toml").write_text(tomli_w.dumps(raw))
    moved = load_settings(tmp_path / "scratch.toml")
    assert moved.paths.warehouse == tmp_path / "scratch" / "warehouse.duckdb"
    assert moved.gate == s.gate and moved.training == s.training and moved.retrain == s.retrain


def test_assign_policies() -> None:
    # no champion after step 1 (blocked at the floor), first champion at step 2, then blocks and promotions
    champions = [None, "v2", "v2", "v2", "v5", "v5", "v5"]
    challengers = ["v1", "v2", "v3", "v4", "v5", None, "v6"]
    got = assign_policies(champions, challengers, every=2)
    assert got["served"] == champions
    assert got["never_retrain"] == [None] + ["v2"] * 6
    assert got["always_promote"] == [None, "v2", "v3", "v4", "v5", "v5", "v6"]
    # step 2 -> AP of step 2; steps 3 -> held; 4 -> AP of 4; 5 held; 6 -> AP of 6 (v5, nothing new); 7 held
    assert got["every_n"] == [None, "v2", "v2", "v4", "v4", "v5", "v5"]
    assert assign_policies(champions, challengers, every=1)["every_n"] == got["always_promote"]
    late = assign_policies(champions, challengers, every=3)["every_n"]
    assert late == [None, "v2", "v3", "v3", "v3", "v5", "v5"]
    assert assign_policies([None, None], ["v1", None], every=3)["never_retrain"] == [None, None]
    with pytest.raises(Exception, match="at least 1"):
        assign_policies(champions, challengers, every=0)


def _record(step: int, verdict: str = "promoted", file: str | None = None) -> StepRecord:
    return StepRecord(step, file or f"d{step}.csv", verdict, "v1", f"v{step}", seconds=1.5)


def test_progress_redraws_one_line_on_a_terminal_and_writes_a_line_per_step_otherwise() -> None:
    plain = io.StringIO()
    p = Progress(plain, 3, tty=False)
    for k in (1, 2, 3):
        p.starting(k, f"d{k}.csv")
        p.finished(_record(k))
    p.close()
    lines = plain.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in plain.getvalue()
    assert lines[-1].startswith("backtest [" + "#" * 24 + "] 3/3 promoted v3, champion v1 (1.5 s)")
    assert lines[-1].endswith(": d3.csv")
    tty = io.StringIO()
    p = Progress(tty, 3, tty=True)
    for k in (1, 2, 3):
        p.starting(k, f"d{k}.csv")
        p.finished(_record(k))
    assert "\n" not in tty.getvalue() and tty.getvalue().count("\r") == 6
    p.close()
    assert tty.getvalue().endswith("\n")


def _synthetic(names: list[str], served: list[float], ap: list[float]) -> Backtest:
    steps = []
    for i, name in enumerate(names):
        last = i == len(names) - 1
        steps.append(
            StepResult(
                record=_record(i + 1, "blocked" if i else "promoted", file=name),
                batch_id=i + 1,
                next_batch_id=None if last else i + 2,
                next_rows=0 if last else 100,
                versions={"served": "v1", "always_promote": "v2", "never_retrain": "v1", "every_n": "v1"},
                metrics={
                    "served": None if last else served[i],
                    "always_promote": None if last else ap[i],
                    "never_retrain": None if last else served[i],
                    "every_n": None if last else served[i],
                },
                skipped="last file: no next batch to score on" if last else None,
            )
        )
    return Backtest("roc_auc", 3, steps)


def test_means_and_best_baseline() -> None:
    bt = _synthetic(["a.csv", "b.csv", "c.csv"], [0.70, 0.72], [0.74, 0.76])
    data = bt.to_json()
    assert data["steps"] == 2 and data["skipped"] == 0
    assert data["served_mean"] == pytest.approx(0.71)
    assert data["always_promote_mean"] == pytest.approx(0.75)
    assert data["best_baseline"] == "always_promote"
    assert data["served_minus_best_baseline"] == pytest.approx(-0.04)
    table = format_table(bt)
    assert "served minus best baseline -0.0400" in table
    assert table.splitlines()[-2].startswith("mean")


def test_html_escapes_values_from_the_data() -> None:
    evil = '<script>alert("x")</script>.csv'
    page = render_html(
        _synthetic([evil, "b.csv", "c.csv"], [0.7, 0.72], [0.74, 0.76]), {"deltas_dir": "<b>dir</b>"}
    )
    assert "<script" not in page and "<b>dir</b>" not in page
    assert "&lt;script&gt;" in page and "&lt;b&gt;dir&lt;/b&gt;" in page


def test_wall_clock_notes(make_settings: Any) -> None:
    assert wall_clock_notes(make_settings(**small()), 24) == []
    notes = wall_clock_notes(make_settings(retrain={"cooldown_minutes": 30, "max_trainings_per_day": 4}), 24)
    assert len(notes) == 2 and "cooldown_minutes" in notes[0] and "max_trainings_per_day" in notes[1]


def test_the_temporary_scratch_folder_is_removed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Without --workdir the scratch folder is a temporary directory, gone when the command ends, even
    when the replay fails."""
    from ct_assets.commands import backtest as command

    seen: list[Path] = []

    def failing_replay(settings: Any, files: Any, root: Path, stream: Any) -> Any:
        seen.append(root)
        (root / "warehouse.duckdb").write_text("")
        raise RuntimeError("boom")

    monkeypatch.setattr(command, "_replay", failing_replay)
    monkeypatch.delenv("CT_ASSETS_CONFIG", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    deltas = tmp_path / "deltas"
    deltas.mkdir()
    for name in ("a.csv", "b.csv"):
        (deltas / name).write_text("x\n")
    with pytest.raises(RuntimeError, match="boom"):
        command.run_backtest(load_settings(), deltas)
    assert seen and not seen[0].exists()


def test_scratch_environment_restores_values_and_absence(monkeypatch: pytest.MonkeyPatch) -> None:
    from ct_assets.commands.backtest import scratch_environment

    monkeypatch.setenv("DAGSTER_HOME", "/user/home")
    monkeypatch.delenv("CT_ASSETS_CONFIG", raising=False)
    with (
        pytest.raises(KeyboardInterrupt),
        scratch_environment({"DAGSTER_HOME": "/scratch/d", "CT_ASSETS_CONFIG": "/scratch/c.toml"}),
    ):
        assert os.environ["DAGSTER_HOME"] == "/scratch/d"
        raise KeyboardInterrupt
    assert os.environ["DAGSTER_HOME"] == "/user/home"
    assert "CT_ASSETS_CONFIG" not in os.environ

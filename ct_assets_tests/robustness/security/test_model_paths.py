"""Security properties: nothing is pickled; model files are read only from the models folder; names from
the config are validated and quoted in SQL; the web UI binds to loopback by default; values from the
data are escaped in HTML and markdown; the webhook is called only when configured.

Everything runs against real parts: DuckDB files, Great Expectations, LightGBM, Dagster runs on a
temporary instance, a real HTTP server, and (marked slow) a real `ct-assets demo`.
"""

import ast
import contextlib
import dataclasses
import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import polars as pl
import pytest
import tomli_w
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ct_assets
from ct_assets.cli.main import build_parser, main
from ct_assets.commands.demo import dagster_dev_command
from ct_assets.common.clock import utc_now
from ct_assets.config import LIGHTGBM_NAME_CHARS, Settings, load_settings
from ct_assets.core import alerts, gate, registry
from ct_assets.core.gate import report
from ct_assets.core.modeling import model as lgbm
from ct_assets.definitions import defs
from ct_assets.defs.resources import HandoffIOManager
from ct_assets.errors import ConfigError, RegistryError
from ct_assets.store.sql import fetch_value, quote
from ct_assets.store.warehouse import connect_reader, connect_writer, init_warehouse, transaction
from ct_assets.tools.simulator import SimulationOptions, generate_rows
from ct_assets_tests.helpers.cli import cli_env, console_script, error_lines
from ct_assets_tests.helpers.config import default_tables, small, write_config
from ct_assets_tests.helpers.processes import (
    HOST,
    accepts_on,
    descendants,
    free_port,
    listening_addresses,
    wait_for_port,
)
from ct_assets_tests.helpers.runs import run
from ct_assets_tests.helpers.servers import webhook_server

PACKAGE = Path(ct_assets.__file__).resolve().parent
REPO = PACKAGE.parent
LOOPBACK = HOST


def labelled_frame(n: int, seed: int, *, end: datetime | None = None) -> pl.DataFrame:
    """n rows of the default schema (simulated), ids from seed * 1e6, event times ending just before `end`."""
    rng = np.random.default_rng(seed)
    data = generate_rows(rng, n, SimulationOptions(batches=1, rows=n, seed=seed))
    end = end or utc_now() - timedelta(minutes=5)
    times = [end - timedelta(seconds=60 * (n - i)) for i in range(n)]
    return pl.DataFrame(
        {
            "event_time": times,
            "row_id": np.arange(seed * 1_000_000, seed * 1_000_000 + n, dtype=np.int64),
            **data,
        }
    ).with_columns(pl.col("event_time").cast(pl.Datetime("us")))


# ================================================================================== no pickle anywhere

PICKLING_MODULES = {"pickle", "_pickle", "cPickle", "cloudpickle", "dill", "joblib", "shelve", "marshal"}
PICKLING_NAMES = {
    "to_pickle",
    "read_pickle",
    "fs_io_manager",
    "FilesystemIOManager",
    "PickledObjectFilesystemIOManager",
    "custom_path_fs_io_manager",
    "UPathIOManager",
}


def pickle_uses(text: str, label: str) -> list[str]:
    """Imports of pickling modules, pickling calls and pickling IO managers named in Python source."""
    found = []
    for node in ast.walk(ast.parse(text, filename=label)):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names if a.name.split(".")[0] in PICKLING_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module:
            if node.module.split(".")[0] in PICKLING_MODULES:
                found.append(f"from {node.module}")
            found += [a.name for a in node.names if a.name in PICKLING_NAMES]
        elif isinstance(node, ast.Attribute) and node.attr in PICKLING_NAMES:
            found.append(node.attr)
        elif isinstance(node, ast.Name) and node.id in PICKLING_NAMES:
            found.append(node.id)
        elif (
            isinstance(node, ast.keyword)
            and node.arg == "allow_pickle"
            and not (isinstance(node.value, ast.Constant) and node.value.value is False)
        ):
            found.append("allow_pickle")
    return [f"{label}: {name}" for name in found]


def test_the_package_source_never_pickles() -> None:
    sources = sorted(PACKAGE.rglob("*.py"))
    assert len(sources) > 20  # the whole package is looked at
    uses = [
        use for p in sources for use in pickle_uses(p.read_text(encoding="utf-8"), str(p.relative_to(REPO)))
    ]
    assert uses == []


def test_the_pickle_scan_finds_what_it_looks_for() -> None:
    text = (
        "import joblib\nimport pickle as p\nfrom cloudpickle import dumps\nimport dagster as dg\n"
        "x = dg.fs_io_manager\ndf.to_pickle('x')\nnp.load('f', allow_pickle=True)\nnp.load('g', allow_pickle=False)\n"
    )
    assert [u.split(": ", 1)[1] for u in pickle_uses(text, "probe.py")] == [
        "joblib",
        "pickle",
        "from cloudpickle",
        "fs_io_manager",
        "to_pickle",
        "allow_pickle",
    ]


def io_manager_class(resource: Any) -> type:
    """The class behind a resource definition (Pythonic resources are wrapped in a factory definition)."""
    return getattr(resource, "configurable_resource_cls", None) or type(resource)


def test_every_asset_and_every_job_hands_off_through_the_json_io_manager() -> None:
    repo = defs.get_repository_def()
    resources = repo.get_top_level_resources()
    seen = 0
    for assets_def in repo.asset_graph.assets_defs:
        for key in assets_def.keys:
            io_key = assets_def.get_io_manager_key_for_asset_key(key)
            assert io_manager_class(resources[io_key]) is HandoffIOManager, (key, io_key)
            assert io_manager_class(assets_def.resource_defs[io_key]) is HandoffIOManager, (key, io_key)
            seen += 1
    assert seen >= 7
    for job in repo.get_all_jobs():
        for node in job.graph.node_defs:
            for out in node.output_defs:
                resource = job.resource_defs[out.io_manager_key]
                assert io_manager_class(resource) is HandoffIOManager, (
                    job.name,
                    node.name,
                    out.io_manager_key,
                )
    # ...and the detector tells a pickling IO manager apart.
    assert io_manager_class(dg.fs_io_manager) is not HandoffIOManager


PICKLE_START = re.compile(rb"\A\x80[\x02-\x05]")


def looks_pickled(path: Path) -> bool:
    """A pickle (protocol 2 to 5) starts with PROTO n and ends with STOP ('.')."""
    with path.open("rb") as f:
        head = f.read(2)
        f.seek(-1, os.SEEK_END)
        tail = f.read(1)
    return bool(PICKLE_START.match(head)) and tail == b"."


# ===================================================================== model files: the models folder only

BAD_VERSIONS = ["../x", "v0001/../../x", "/etc/passwd", "v0001/../v0002", "..", "v0001/", "~/v0001", "v1"]
COMMANDS: list[Callable[[str], list[str]]] = [
    lambda v: ["registry", "approve", v, "--reason", "r"],
    lambda v: ["registry", "reject", v, "--reason", "r"],
    lambda v: ["registry", "rollback", "--to", v, "--reason", "r"],
    lambda v: ["report", v],
    lambda v: ["reproduce", v],
]


@pytest.mark.parametrize("command", COMMANDS, ids=["approve", "reject", "rollback", "report", "reproduce"])
def test_the_cli_refuses_a_version_argument_that_is_a_path(
    warehouse: Settings, command: Callable[[str], list[str]], capfd: pytest.CaptureFixture[str]
) -> None:
    for version in BAD_VERSIONS:
        code = main(command(version))
        out, err = capfd.readouterr()
        assert code == 1, (version, out, err)
        assert out == ""
        assert "Traceback" not in err
        (line,) = error_lines(err)
        assert err.strip() == line, err  # one line, nothing else
        assert "is not a model version" in line, line


@pytest.fixture
def outside_model(warehouse: Settings, project: Path) -> Path:
    """A real, loadable model (model.txt and card.json) in <project>/outside, beside the models folder."""
    s = warehouse
    frame = labelled_frame(800, seed=2).filter(pl.col("label").is_not_null())
    trained = lgbm.train(frame, s, {**s.training, "num_iterations": 5})
    stash = project / "stash"
    folder, _ = lgbm.save(trained, stash, "v0001", {})
    outside = project / "outside"
    folder.rename(outside)
    assert lgbm.load(outside).booster.num_trees() == 5  # loadable by a path its caller gives
    assert s.paths.models.resolve() == (project / "data" / "models").resolve()
    return outside


def test_load_version_refuses_names_and_links_that_leave_the_models_folder(
    warehouse: Settings, outside_model: Path
) -> None:
    models = warehouse.paths.models
    for version in ("../../outside", str(outside_model), "v0001/../../../outside"):
        with pytest.raises(RegistryError, match="is not a model version"):
            lgbm.load_version(models, version)
    # A version folder that is a link to the outside model.
    (models / "v0002").symlink_to(outside_model, target_is_directory=True)
    with pytest.raises(RegistryError, match="outside the models folder"):
        lgbm.load_version(models, "v0002")
    # A real version folder whose model file is a link to the outside model (card copied beside it).
    (models / "v0003").mkdir()
    shutil.copy(outside_model / lgbm.CARD_FILE, models / "v0003" / lgbm.CARD_FILE)
    (models / "v0003" / lgbm.MODEL_FILE).symlink_to(outside_model / lgbm.MODEL_FILE)
    with pytest.raises(RegistryError, match="is a link leading outside"):
        lgbm.load_version(models, "v0003")
    # The same files copied in are loaded: the refusals above are about where the files are.
    shutil.copytree(outside_model, models / "v0004")
    assert lgbm.load_version(models, "v0004").booster.num_trees() == 5


def tamper(s: Settings, bad: str) -> None:
    """Registry rows naming `bad` as a model: promoted once, then v0009 promoted over it."""
    now = utc_now() - timedelta(hours=1)
    with connect_writer(s) as con, transaction(con):
        for i, version in enumerate((bad, "v0009")):
            record = registry.ModelRecord(
                version=version,
                created_at=now,
                dataset_hash="d" * 16,
                code_version="x",
                params={},
                n_train=10,
                n_holdout=5,
                train_seconds=0.1,
                watermark_batch_id=i + 1,
                watermark_event_time=None,
                model_sha256="0" * 64,
                run_id=None,
            )
            registry.record_model(con, record)
            registry.record(con, action="promoted", version=version, champion_after=version, now=now)


@pytest.mark.parametrize("where", ["relative", "absolute"])
def test_a_registry_row_naming_a_path_is_refused_by_rollback(
    warehouse: Settings, outside_model: Path, where: str, capfd: pytest.CaptureFixture[str]
) -> None:
    bad = "../../outside" if where == "relative" else str(outside_model)
    tamper(warehouse, bad)
    with connect_reader(warehouse) as con:
        assert registry.rollback_target(con) == bad  # the ledger leads there...
        entries = len(registry.ledger(con))
    code = main(["registry", "rollback", "--reason", "bad week"])
    _, err = capfd.readouterr()
    assert code == 1
    (line,) = error_lines(err)
    assert "is not a model version" in line and "Traceback" not in err, err
    with connect_reader(warehouse) as con:  # ...but the champion did not move
        assert registry.champion(con) == "v0009"
        assert len(registry.ledger(con)) == entries


# ===================================================================== names from the config in SQL

ODD_TIME = 'when"; DROP TABLE raw_deltas; --'
ODD_LABEL = "y'); DROP TABLE ledger; --"
ODD_ID = 'id" OR "1"="1'
ODD_SLICE = "region');DROP_TABLE_models;--"
ODD_FEATURE = "tenure');DELETE_FROM_ingest_log;--"
RENAMED = {
    "event_time": ODD_TIME,
    "label": ODD_LABEL,
    "row_id": ODD_ID,
    "region": ODD_SLICE,
    "tenure_months": ODD_FEATURE,
}


@pytest.mark.parametrize(
    "name",
    [
        'a"; DROP TABLE raw_deltas; --',
        "monthly spend",
        "a,b",
        "a:b",
        "a[0]",
        "{x}",
        "tab\there",
        "line\nbreak",
        "para\u2028graph",
    ],
)
def test_a_feature_name_lightgbm_cannot_keep_is_refused_at_load(project: Path, name: str) -> None:
    features = default_tables()["features"]
    features[name] = features.pop("support_calls")
    path = project / "odd.toml"
    path.write_text(tomli_w.dumps({"features": features}))
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    message = str(err.value)
    assert len(message.splitlines()) == 1, message
    assert "feature name" in message or "not a usable column name" in message, message
    assert name.encode("unicode_escape").decode() in message  # named, control characters escaped
    # Without the offending characters the same config loads.
    clean = "".join(ch for ch in name if not (ch in LIGHTGBM_NAME_CHARS or ch.isspace()))
    features[clean] = features.pop(name)
    path.write_text(tomli_w.dumps({"features": features}))
    assert clean in load_settings(path).feature_names


@pytest.mark.parametrize("role", ["event_time", "label", "row_id"])
def test_a_column_name_with_a_line_break_is_refused_on_one_line(project: Path, role: str) -> None:
    path = project / "odd.toml"
    path.write_text(f"[columns]\n{role} = {json.dumps('x' + chr(10) + 'DROP TABLE ledger')}\n")
    with pytest.raises(ConfigError) as err:
        load_settings(path)
    assert len(str(err.value).splitlines()) == 1, str(err.value)
    assert "not a usable column name" in str(err.value)


@dataclasses.dataclass
class Pipeline:
    root: Path
    settings: Settings
    ingest: dg.ExecuteInProcessResult
    ct: dg.ExecuteInProcessResult


@pytest.fixture(scope="module")
def odd_pipeline(tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    """Three landed files ingested, then a CT run (golden set, training data, challenger, validation,
    promotion), on a config whose column names look like SQL, on a fresh warehouse and Dagster instance."""
    root = tmp_path_factory.mktemp("odd_names")
    home = root / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    features = {RENAMED.get(k, k): v for k, v in default_tables()["features"].items()}
    columns = {"event_time": ODD_TIME, "label": ODD_LABEL, "row_id": ODD_ID, "slices": [ODD_SLICE, "channel"]}
    config = write_config(root / "config.toml", {**small(), "columns": columns, "features": features})
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(root)
        mp.setenv("CT_ASSETS_CONFIG", str(config))
        mp.setenv("DAGSTER_HOME", str(home))
        s = load_settings(config)
        init_warehouse(s)
        end = utc_now() - timedelta(minutes=5)
        for i in range(3):
            frame = labelled_frame(2500, seed=10 + i, end=end - timedelta(days=3 - i)).rename(RENAMED)
            frame.write_parquet(s.paths.landing / f"delta_{i}.parquet")
        with dg.instance_for_test(temp_dir=str(home)) as inst:
            ingest = run(inst, "ingest_job")
            ct = run(inst, "ct_job")
    return Pipeline(root, s, ingest, ct)


def test_real_runs_hand_off_json_and_write_no_pickle(odd_pipeline: Pipeline) -> None:
    p = odd_pipeline
    assert p.ingest.success and p.ct.success
    handoff = p.settings.paths.state / "handoff"
    handed = {f.name: json.loads(f.read_text()) for f in handoff.iterdir()}
    ct_assets_run = {
        "golden_dataset",
        "training_dataset",
        "challenger_model",
        "validation_report",
        "champion_model",
    }
    assert {f"{a}.json" for a in {"raw_deltas", *ct_assets_run}} <= set(handed), sorted(handed)
    assert all(name.endswith(".json") for name in handed)
    assert handed["raw_deltas.json"]["run_id"] == p.ingest.run_id
    assert all(handed[f"{a}.json"]["run_id"] == p.ct.run_id for a in ct_assets_run)
    # Dagster's default IO manager would have written <DAGSTER_HOME>/storage/<asset>: only the runs'
    # compute logs are there.
    storage = p.root / "dagster_home" / "storage"
    stored = [f.relative_to(storage) for f in storage.rglob("*") if f.is_file()]
    assert [f for f in stored if "compute_logs" not in f.parts] == []
    files = [f for f in p.root.rglob("*") if f.is_file() and f.stat().st_size > 1]
    assert len(files) > 10
    assert [f for f in files if looks_pickled(f)] == []


def test_the_pickle_signature_check_recognises_a_pickle(tmp_path: Path) -> None:
    import pickle  # only here, to make the bytes the check above must recognise

    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"p{protocol}"
        path.write_bytes(pickle.dumps({"version": "v0001"}, protocol=protocol))
        assert looks_pickled(path), protocol
    (tmp_path / "j").write_text(json.dumps({"version": "v0001"}))
    assert not looks_pickled(tmp_path / "j")


def test_sql_looking_names_are_quoted_safely_through_ingest_training_and_promotion(
    odd_pipeline: Pipeline,
) -> None:
    s = odd_pipeline.settings
    assert (s.columns.event_time, s.columns.label, s.columns.row_id) == (ODD_TIME, ODD_LABEL, ODD_ID)
    assert odd_pipeline.ingest.success
    assert odd_pipeline.ct.success, [e.message for e in odd_pipeline.ct.all_events if e.is_failure]
    with connect_reader(s) as con:
        tables = {r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        columns = [
            r[0]
            for r in con.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = 'raw_deltas' "
                "ORDER BY ordinal_position"
            ).fetchall()
        ]
        rows = fetch_value(con, "SELECT count(*) FROM raw_deltas")
        ids = fetch_value(con, f"SELECT count(DISTINCT {quote(ODD_ID)}) FROM raw_deltas")
        logged = fetch_value(con, "SELECT count(*) FROM ingest_log WHERE status = 'ingested'")
        champion = registry.champion(con)
        golden_slices = json.loads(fetch_value(con, "SELECT slice_counts FROM golden_versions"))
    assert {"raw_deltas", "ledger", "models", "ingest_log", "golden_rows"} <= tables
    assert columns[:3] == [ODD_TIME, ODD_ID, ODD_FEATURE] and ODD_LABEL in columns and ODD_SLICE in columns
    assert rows == ids == 7500 and logged == 3
    assert champion == "v0001"
    assert set(golden_slices) == {ODD_SLICE, "channel"}
    loaded = lgbm.load_version(s.paths.models, champion)
    assert loaded.booster.feature_name()[:1] == [ODD_FEATURE]
    assert ODD_SLICE in [f["name"] for f in loaded.features]


# ============================================================================== the web UI: loopback


def test_the_demo_serves_the_ui_on_loopback_unless_told_otherwise(tmp_path: Path) -> None:
    default = build_parser().parse_args(["demo"])
    assert default.host == LOOPBACK
    command = dagster_dev_command(default.host, default.port, tmp_path / "workspace.yaml")
    assert command[command.index("-h") + 1] == LOOPBACK
    assert "--host" not in command and command.count("-h") == 1
    chosen = build_parser().parse_args(["demo", "--host", "0.0.0.0", "--port", "3111"])
    command = dagster_dev_command(chosen.host, chosen.port, tmp_path / "workspace.yaml")
    assert command[command.index("-h") + 1] == "0.0.0.0" and command[command.index("-p") + 1] == "3111"
    # Neither the Makefile's `demo` nor the shipped workspace and instance files widen it.
    make_demo = re.search(r"^demo:.*?\n((?:\t.*\n)+)", (REPO / "Makefile").read_text(), re.M)
    assert make_demo and "--host" not in make_demo.group(1) and " -h" not in make_demo.group(1)
    workspace = (REPO / "workspace.yaml").read_text()
    assert "python_module" in workspace and "host" not in workspace
    instance_yaml = (PACKAGE / "dagster_instance.yaml").read_text()
    assert "0.0.0.0" not in instance_yaml and "host:" not in instance_yaml


@pytest.mark.slow
def test_ct_assets_demo_listens_on_loopback_only(project: Path) -> None:
    port = free_port()
    log = project / "demo.log"
    with open(log, "wb") as out:
        demo = subprocess.Popen(
            [console_script(), "demo", "--port", str(port), "--interval", "3600"],
            cwd=project,
            env=cli_env(project / "dagster_home"),
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    groups: set[int] = set()
    try:
        wait_for_port(demo, port, log, 150)
        groups |= process_groups(demo.pid)
        time.sleep(2)
        bound = listening_addresses(port)
        other = accepts_on("127.0.0.2", port)
        groups |= process_groups(demo.pid)
    finally:
        # Ctrl-C: the demo stops `dagster dev` (its own process group) before it exits.
        with contextlib.suppress(ProcessLookupError):
            demo.send_signal(signal.SIGINT)
        try:
            demo.wait(timeout=60)
        except subprocess.TimeoutExpired:
            os.killpg(demo.pid, signal.SIGKILL)
            demo.wait(timeout=20)
        for group in groups - {os.getpgid(0)}:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(group, signal.SIGKILL)
    assert bound == {LOOPBACK}, f"the web UI listens on {sorted(bound)}"
    assert not other, "the web UI accepts connections on 127.0.0.2"
    assert f"http://{LOOPBACK}:{port}" in log.read_text()


def process_groups(pid: int) -> set[int]:
    """The process groups of everything below `pid` (the demo starts `dagster dev` in its own)."""
    groups = set()
    for child in descendants(pid):
        with contextlib.suppress(ProcessLookupError):
            groups.add(os.getpgid(child))
    return groups


# =================================================================== escaping in HTML and in markdown

ODD_TEXT = st.text(
    alphabet=st.one_of(
        st.sampled_from(list("<>&\"'|\\`*_[]()#!~-+=.:;/ \n\r\t")),
        st.characters(codec="utf-8", exclude_categories=("Cs",), exclude_characters="\x00"),
    ),
    min_size=1,
    max_size=24,
)
HOSTILE = [
    "<script>alert(1)</script>",
    "a|b",
    "a\\|b",
    "<img src=x onerror=alert(1)>",
    '"><svg onload=alert(1)>',
    "[x](javascript:alert(1))",
    "&lt;b&gt;",
    "**bold** _it_ `code`",
    "x\n# heading\n| a | b |",
]


class Page(HTMLParser):
    """Tags (with their attributes) and text of an HTML document, entities decoded."""

    def __init__(self, text: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.text: list[str] = []
        self.feed(text)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, attrs))

    def handle_data(self, data: str) -> None:
        self.text.append(data)

    @property
    def tag_names(self) -> list[str]:
        return [t for t, _ in self.tags]

    @property
    def words(self) -> str:
        return " ".join("".join(self.text).split())


def squash(text: str) -> str:
    return " ".join(text.split())


def gate_result(
    set_names: tuple[str, str], slice_column: str, values: tuple[str, str]
) -> tuple[gate.GateResult, list[gate.EvalSet]]:
    """The real gate on two small sets where the challenger is worse in the first slice value."""
    rng = np.random.default_rng(0)
    n = 240
    y = (rng.random(n) < 0.5).astype(np.int8)
    champion = np.clip(0.5 + (y - 0.5) * 0.6 + rng.normal(0, 0.1, n), 0.01, 0.99)
    group = np.array([values[i % 2] for i in range(n)], dtype=object)
    challenger = np.where(group == values[0], rng.random(n), champion)
    with_small_slices = dataclasses.replace(
        _SETTINGS, gate=dataclasses.replace(_SETTINGS.gate, min_slice_rows=20)
    )
    sets = [
        gate.EvalSet(name, y, {slice_column: group.copy()}, challenger.copy(), champion.copy())
        for name in set_names
    ]
    return gate.evaluate(with_small_slices, sets), sets


_SETTINGS = load_settings(os.devnull, cwd=Path("/"))  # an empty file: the defaults (their gate is used)


def render_both(
    set_names: tuple[str, str], column: str, values: tuple[str, str]
) -> tuple[str, str, gate.GateResult]:
    result, sets = gate_result(set_names, column, values)
    meta = {"challenger_version": "v0002", "champion_version": "v0001", "run_id": "r", "created_at": "t"}
    meta["importance_movers"] = [{"feature": column, "champion": 0.5, "challenger": 0.25, "change": -0.25}]
    return report.render(result, sets, meta), report.markdown_summary(result, meta), result


def markdown_to_html(text: str) -> str:
    from markdown_it import MarkdownIt

    # Raw HTML allowed: the worst renderer a summary could meet.
    return MarkdownIt("commonmark", {"html": True}).enable("table").render(text)


PLAIN: tuple[tuple[str, str], str, tuple[str, str]] = (("golden", "holdout"), "region", ("north", "south"))


@functools.cache
def plain_rendering() -> tuple[str, str, gate.GateResult]:
    return render_both(*PLAIN)


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    set_names=st.lists(ODD_TEXT, min_size=2, max_size=2, unique=True).map(tuple) | st.just(PLAIN[0]),
    column=ODD_TEXT | st.sampled_from(HOSTILE),
    values=st.lists(ODD_TEXT | st.sampled_from(HOSTILE), min_size=2, max_size=2, unique=True).map(tuple),
)
def test_values_from_the_data_are_text_in_the_html_report_and_the_markdown_summary(
    set_names: tuple[str, str], column: str, values: tuple[str, str]
) -> None:
    plain_html, plain_md, plain = plain_rendering()
    odd_html, odd_md, odd = render_both(set_names, column, values)
    assert sorted(c.status for c in odd.comparisons) == sorted(c.status for c in plain.comparisons)
    regressed = [c.slice for c in odd.comparisons if c.status == "regression" and c.slice != "overall"]
    assert regressed == [f"{column}={values[0]}"] * 2  # the first value, in both sets

    # HTML: the same elements as with plain values, no event handler, every value shown as text.
    page, plain_page = Page(odd_html), Page(plain_html)
    assert page.tag_names == plain_page.tag_names
    assert not any(name.lower().startswith("on") for _, attrs in page.tags for name, _ in attrs)
    for value in [*set_names, column, *values]:
        assert squash(value) in page.words, value

    # Markdown (rendered as CommonMark with GFM tables, raw HTML on): the same elements as with plain
    # values (the table keeps its six cells a row), every value it names (the sets in the table, the
    # regressed slice in a line) shown as text.
    md_page, plain_md_page = Page(markdown_to_html(odd_md)), Page(markdown_to_html(plain_md))
    assert md_page.tag_names == plain_md_page.tag_names
    assert md_page.tag_names.count("td") == 6 * (md_page.tag_names.count("tr") - 1)  # the header row has th
    for value in [*set_names, column, values[0]]:
        assert squash(value) in md_page.words, value


def test_hostile_values_in_the_markdown_table_keep_its_shape() -> None:
    odd_html, odd_md, _ = render_both(("a|b", "c\\|d"), "<script>x</script>", ("p|q", "**r**"))
    rows = [line for line in odd_md.splitlines() if line.startswith("| ")]
    assert len(rows) == 3  # header and the two overall rows
    cells = [re.split(r"(?<!\\)\|", row.strip())[1:-1] for row in rows]
    assert all(len(c) == 6 for c in cells), cells
    assert "<script>" not in odd_md and "<script>" not in odd_html
    assert "&lt;script&gt;x&lt;/script&gt;" in odd_html


# ========================================================================== the webhook, when configured


_CONNECTS: list[list[Any]] = []


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if event == "socket.connect" and _CONNECTS:
        _CONNECTS[-1].append(args[1])


sys.addaudithook(_audit)


@contextlib.contextmanager
def socket_connects() -> Iterator[list[Any]]:
    """Addresses this process connects sockets to while the block runs (Python's audit events)."""
    seen: list[Any] = []
    _CONNECTS.append(seen)
    try:
        yield seen
    finally:
        _CONNECTS.remove(seen)


def test_the_webhook_is_called_only_when_configured(
    make_settings: Callable[..., Settings], monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)  # the POST must go to the local server itself
    now = datetime.now(UTC).replace(tzinfo=None)
    with webhook_server(status=204) as hook:
        url = hook.url
        quiet = make_settings(alerts={"webhook_url": ""})
        init_warehouse(quiet)
        with socket_connects() as connects:
            sent = alerts.raise_alert(
                quiet, kind="block", cause="block:v0002", message="blocked v0002", now=now
            )
        assert sent is not None
        assert connects == [] and hook.requests == []
        with connect_reader(quiet) as con:
            assert fetch_value(con, "SELECT delivered FROM alerts") == "no webhook configured"

        loud = make_settings(alerts={"webhook_url": url})
        assert loud.paths.warehouse == quiet.paths.warehouse
        with socket_connects() as connects:
            sent = alerts.raise_alert(
                loud, kind="block", cause="block:v0003", message="blocked v0003", now=now
            )
            again = alerts.raise_alert(
                loud, kind="block", cause="block:v0003", message="blocked v0003", now=now
            )
        assert sent is not None and again is None  # an open cause is not alerted twice
        assert [tuple(a[:2]) for a in connects] == [(LOOPBACK, int(url.split(":")[2].split("/")[0]))]
        assert [(r["method"], r["path"]) for r in hook.requests] == [("POST", "/hooks/ct")]
        payload = json.loads(hook.requests[0]["body"])
        assert (payload["kind"], payload["cause"], payload["message"]) == (
            "block",
            "block:v0003",
            "blocked v0003",
        )
        with connect_reader(loud) as con:
            delivered = [
                r[0] for r in con.execute("SELECT delivered FROM alerts ORDER BY alert_id").fetchall()
            ]
        assert delivered == ["no webhook configured", "sent (HTTP 204)"]

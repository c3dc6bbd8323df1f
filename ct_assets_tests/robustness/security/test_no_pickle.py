"""Nothing is pickled: the package source never imports or calls a pickler, every asset and job hands off
through the JSON IO manager, and real runs write no pickle anywhere."""

import ast
import json
import os
import re
from pathlib import Path
from typing import Any

import dagster as dg

import ct_assets
from ct_assets.definitions import defs
from ct_assets.defs.resources import HandoffIOManager
from ct_assets_tests.robustness.security.odd_names import Pipeline

PACKAGE = Path(ct_assets.__file__).resolve().parent
REPO = PACKAGE.parent
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

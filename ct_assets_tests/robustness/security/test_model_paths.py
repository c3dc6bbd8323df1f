"""Model files are read only from the models folder: the CLI refuses a version argument that is a path,
load_version refuses names and links leading out of it, and a registry row naming a path is refused by
rollback with the champion left where it was.

(The other security properties: no pickles, names from the config, escaping and the webhook in this
folder; the web UI on loopback in e2e/test_demo.py.)"""

import shutil
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import polars as pl
import pytest

from ct_assets.cli.main import main
from ct_assets.common.clock import utc_now
from ct_assets.config import Settings
from ct_assets.core import registry
from ct_assets.core.modeling import model as lgbm
from ct_assets.errors import RegistryError
from ct_assets.store.warehouse import connect_reader, connect_writer, transaction
from ct_assets_tests.helpers.cli import error_lines
from ct_assets_tests.helpers.data import labelled_frame

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

"""Crashes: the real `ct-assets` process is killed with SIGKILL at named points (ct_assets.common.failpoints),
then the same command is run again without the failpoint. The rerun must finish promptly (nothing the
dead process held blocks it: file locks die with their process, a Dagster run it left STARTED is marked
failed), and the warehouse, the models folder, the ledger and the Dagster instance must tell one
consistent story (harness.check_invariants): every landed file's rows exactly once, no ledger or models
row naming an incomplete model folder, a champion that is the old one or the new one (never none),
version numbers that step over folders left by the dead process.

This module: `cycle` killed inside the CT run, at each point from training to the promotion's commit."""

from pathlib import Path

import dagster as dg
import pytest

from ct_assets.core.modeling import model as lgbm
from ct_assets_tests.robustness.crashes.harness import (
    PROMPT_SECONDS,
    Bases,
    assert_recovered,
    check_invariants,
    copy_of,
    live_runs,
    locks_free,
    tick,
)

pytestmark = pytest.mark.slow


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
        request = tick(p, "retrain_sensor")
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

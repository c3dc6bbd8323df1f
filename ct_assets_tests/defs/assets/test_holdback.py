"""Hold-back through the real Dagster jobs (the gate rule's steps 1 and 2): a poisoned batch after a
champion is judged suspect by the ingest run and held back from the CT run's training data set; the
next clean batch refutes it (excluded for good, a ledger row and an alert); a person lists, releases
and excludes batches from the command line; a shift that persists is confirmed and trained on.

The simulator's stream starts at batch 9 here, so that its drift modes act at its batch 12 (the
fourth delta landed): `poison` flips 60 % of that batch's labels where the features are most telling,
`sudden` changes the concept for good from it."""

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import dagster as dg

from ct_assets.config import Settings
from ct_assets.core.datasets.training import DatasetInfo, load_dataset, read_split
from ct_assets.core.monitoring import evidence
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets.tools.simulator import STATE_FILE, SimulationOptions, simulate
from ct_assets_tests.helpers.cli import cli, ok
from ct_assets_tests.helpers.config import small
from ct_assets_tests.helpers.runs import materialized, metadata, run
from ct_assets_tests.helpers.warehouse import champion, ledger

ROWS = 3000  # per simulated batch
SHIFT_ROWS = 8000  # per batch of the shift


def stream_from(settings: Settings, batch: int) -> None:
    """Make the simulator's next delta its stream batch `batch` (its state file, as a long stream leaves it)."""
    settings.paths.state.mkdir(parents=True, exist_ok=True)
    state = {"next_row_id": 1, "next_batch": batch, "last_event_time": None}
    (settings.paths.state / STATE_FILE).write_text(json.dumps(state))


def land_and_ingest(
    instance: dg.DagsterInstance, settings: Settings, drift: str, batches: int = 1, rows: int = ROWS
) -> None:
    simulate(settings, SimulationOptions(batches=batches, rows=rows, seed=1, drift=drift))
    assert run(instance, "ingest_job").success


def first_champion(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, drift: str
) -> Settings:
    """Stream batches 9 to 11 (clean in every mode used here) ingested as warehouse batches 1 to 3 and
    a first champion trained on them; batch 12 lands next."""
    settings = make_settings(**small(dataset={"golden_fraction": 0.2}))
    init_warehouse(settings)
    stream_from(settings, 9)
    land_and_ingest(instance, settings, drift, batches=3)
    assert run(instance, "ct_job").success
    assert champion(settings) == "v0001"
    return settings


def status_of(settings: Settings) -> dict[int, dict[str, Any]]:
    with connect_reader(settings) as con:
        return {r["batch_id"]: r for r in evidence.latest(con)}


def data_alerts(settings: Settings) -> dict[str, str]:
    with connect_reader(settings) as con:
        rows = con.execute(
            "SELECT cause, message FROM alerts WHERE kind = 'data' ORDER BY alert_id"
        ).fetchall()
    return dict(rows)


def ct_dataset(
    instance: dg.DagsterInstance, settings: Settings, *, train: bool = True
) -> tuple[dg.ExecuteInProcessResult, DatasetInfo]:
    """One CT run (with train=False, only its data sets) and the training data set it materialized (its
    selection as the run made it: a data set is recorded once per content hash, so the same rows
    selected again keep their first record)."""
    result = run(instance, "ct_job", selection=None if train else ["golden_dataset", "training_dataset"])
    meta = metadata(result, "training_dataset")
    ds = DatasetInfo.from_json(result.output_for_node("training_dataset"))
    assert meta["dataset_hash"] == ds.dataset_hash
    assert meta["held_back_batches"] == (", ".join(map(str, ds.excluded_batches)) or "none")
    assert meta["rows_left_out_held_back"] == ds.rows_held_back
    with connect_reader(settings) as con:
        assert load_dataset(con, ds.dataset_hash).train_hash == ds.train_hash
    return result, ds


def eligible_rows(settings: Settings, batch: int) -> int:
    """Labelled rows of a batch outside the reserve and without a content twin in it: what holding the
    batch back leaves out."""
    with connect_reader(settings) as con:
        (n,) = con.execute(
            "SELECT count(*) FROM raw_deltas WHERE _batch_id = ? AND label IS NOT NULL AND NOT _reserve "
            "AND _content_hash NOT IN (SELECT _content_hash FROM raw_deltas WHERE _reserve)",
            [batch],
        ).fetchone()
    return int(n)


def test_a_poisoned_batch_is_held_back_then_excluded_when_the_next_batch_refutes_it(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    settings = first_champion(make_settings, instance, "poison")

    # Stream batch 12, poisoned, lands as warehouse batch 4: the champion is far off on its labels.
    land_and_ingest(instance, settings, "poison")
    suspect = status_of(settings)[4]
    assert (suspect["status"], suspect["champion"]) == ("suspect", "v0001")
    assert suspect["value"] < suspect["reference"] - 0.2, suspect
    assert list(data_alerts(settings)) == ["holdback:4"]
    assert "batch 4 held back from training as suspect" in data_alerts(settings)["holdback:4"]

    # The CT run's training data set leaves it out, and says so.
    result, ds = ct_dataset(instance, settings)
    assert result.success
    assert ds.excluded_batches == (4,)
    assert ds.rows_held_back == eligible_rows(settings, 4) > 2000

    # Stream batch 13, clean, is back in range: batch 4 is refuted, excluded for good.
    land_and_ingest(instance, settings, "poison")
    latest = status_of(settings)
    assert (latest[4]["status"], latest[5]["status"]) == ("refuted", "normal")
    assert "batch 5 is back in range: batch 4 stays excluded" in latest[4]["reason"]
    (excluded,) = [e for e in ledger(settings) if e.action == "batch_excluded"]
    assert excluded.metrics["batch_id"] == 4 and excluded.version is None
    assert excluded.champion_after == "v0001"
    alerts = data_alerts(settings)
    assert list(alerts) == ["holdback:4", "excluded:4"]
    assert "`ct-assets batch release 4 --reason ...` lets it back in" in alerts["excluded:4"]
    _, ds = ct_dataset(instance, settings, train=False)
    assert ds.excluded_batches == (4,) and ds.max_batch_id == 5


def test_a_person_lists_releases_and_excludes_batches_from_the_command_line(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, project: Path
) -> None:
    settings = first_champion(make_settings, instance, "poison")
    land_and_ingest(instance, settings, "poison", batches=2)  # stream batches 12 (poisoned) and 13
    listed = json.loads(ok(cli(project, "batch", "list", "--json")).stdout)
    assert [(r["batch_id"], r["status"]) for r in listed] == [(5, "normal"), (4, "refuted")]
    assert listed[1]["champion"] == "v0001" and listed[1]["value"] < listed[1]["reference"]

    released = ok(cli(project, "batch", "release", "4", "--reason", "labels checked by hand")).stdout
    assert released.strip().startswith("batch 4: released (by ")
    ok(cli(project, "batch", "exclude", "5", "--reason", "known bad labels"))
    latest = status_of(settings)
    assert (latest[4]["status"], latest[5]["status"]) == ("released", "excluded")
    actions = [(e.action, e.metrics.get("batch_id"), e.reason) for e in ledger(settings)[:2]]
    assert actions == [
        ("batch_excluded", 5, "known bad labels"),
        ("batch_released", 4, "labels checked by hand"),
    ]

    # The next data set takes batch 4 again and leaves batch 5 out.
    _, ds = ct_dataset(instance, settings, train=False)
    assert ds.excluded_batches == (5,)
    assert ds.rows_held_back == eligible_rows(settings, 5) > 2000
    with connect_reader(settings) as con:
        ids = [
            i
            for part in ("train", "holdout")
            for i in read_split(con, settings, ds, part)["row_id"].to_list()
        ]
        batches = dict(con.execute("SELECT row_id, _batch_id FROM raw_deltas").fetchall())
    per_batch = Counter(batches[i] for i in ids)
    assert per_batch[4] == eligible_rows(settings, 4) > 2000 and per_batch[5] == 0


def test_a_shift_that_persists_is_confirmed_and_trained_on(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    """Stream batches 12 and 13 under the changed concept (`sudden`): the first is suspect, the second is
    off too, so both are confirmed; no batch is excluded, and the CT run trains on both. (Batches of
    8000 rows: the champion's drop under this shift, about 0.13, then clears the limit 4 * 2 * its
    sampling error, about 0.075, by a wide margin; on 3000 rows the limit is about 0.12.)"""
    settings = first_champion(make_settings, instance, "sudden")
    land_and_ingest(instance, settings, "sudden", rows=SHIFT_ROWS)
    assert status_of(settings)[4]["status"] == "suspect"
    land_and_ingest(instance, settings, "sudden", rows=SHIFT_ROWS)
    latest = status_of(settings)
    assert (latest[4]["status"], latest[5]["status"]) == ("confirmed", "confirmed")
    assert "batch 5 is off too: a shift, trained on" in latest[4]["reason"]
    assert [e for e in ledger(settings) if e.action == "batch_excluded"] == []
    assert list(data_alerts(settings)) == ["holdback:4"]  # held back while in doubt, never excluded

    result, ds = ct_dataset(instance, settings)
    assert "challenger_model" in materialized(result)
    assert ds.excluded_batches == () and ds.rows_held_back == 0
    assert ds.max_batch_id == 5
    with connect_reader(settings) as con:
        (trained,) = con.execute(
            "SELECT dataset_hash FROM models WHERE run_id = ?", [result.run_id]
        ).fetchone()
    assert trained == ds.dataset_hash

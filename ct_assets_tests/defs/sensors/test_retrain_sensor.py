"""retrain_sensor through build_sensor_context: skip reasons (no warehouse, no data, below the
threshold, a locked warehouse), one run request per newest batch with its cursor, again after a blocked
challenger once new data lands; and the trigger-input snapshot it answers from."""

import json
from collections.abc import Callable

import dagster as dg
import duckdb

from ct_assets.config import Settings
from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.core.triggers.decision import read_trigger_inputs
from ct_assets.core.triggers.snapshot import load_trigger_inputs, snapshot_inputs, snapshot_path
from ct_assets.definitions import defs
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets_tests.defs.sensors.support import land
from ct_assets_tests.helpers.config import WEAK, small
from ct_assets_tests.helpers.runs import QUIET, tick
from ct_assets_tests.helpers.warehouse import champion, holding

# Every CT run refreshes the golden set from the reserve first (when it moved), then trains and decides.
CT_KEYS = ["golden_dataset", "training_dataset", "challenger_model", "validation_report", "champion_model"]


def labelled_rows_after(settings: Settings, batch_id: int) -> int:
    with connect_reader(settings) as con:
        row = con.execute(
            "SELECT coalesce(sum(rows_labelled), 0) FROM ingest_log WHERE status = 'ingested' AND batch_id > ?",
            [batch_id],
        ).fetchone()
    assert row is not None
    return int(row[0])


def run_ct(instance: dg.DagsterInstance, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """Execute the run a retrain_sensor request asks for, as the daemon would."""
    return defs.resolve_job_def("ct_job").execute_in_process(
        instance=instance,
        raise_on_error=False,
        run_config=QUIET,
        asset_selection=request.asset_selection,
        tags=request.tags,
    )


def test_retrain_sensor_skips_when_the_warehouse_does_not_exist(
    settings: Settings, instance: dg.DagsterInstance
) -> None:
    assert not settings.paths.warehouse.exists()
    result, cursor = tick("retrain_sensor", instance, cursor='{"requested_batch": 7}')
    assert isinstance(result, dg.SkipReason)
    assert "no warehouse" in (result.skip_message or "")
    assert cursor == '{"requested_batch": 7}'
    assert not settings.paths.warehouse.exists()  # a sensor never creates it


def test_retrain_sensor_skips_before_any_data(warehouse: Settings, instance: dg.DagsterInstance) -> None:
    result, cursor = tick("retrain_sensor", instance)
    assert isinstance(result, dg.SkipReason)
    assert "no data ingested yet" in (result.skip_message or "")
    assert cursor is None


def test_retrain_sensor_skips_below_the_threshold(warehouse: Settings, instance: dg.DagsterInstance) -> None:
    land(warehouse, batches=1, rows=600, seed=3)
    ingest_landed_files(warehouse)
    labelled = labelled_rows_after(warehouse, 0)
    assert 0 < labelled < warehouse.min_new_rows
    result, cursor = tick("retrain_sensor", instance)
    assert isinstance(result, dg.SkipReason)
    assert result.skip_message == (
        f"no trigger due: {labelled} labelled rows since the start (no champion yet), threshold 1000"
    )
    assert cursor is None


def test_retrain_sensor_requests_one_ct_run_per_newest_batch(
    warehouse: Settings, instance: dg.DagsterInstance
) -> None:
    land(warehouse, batches=3, rows=500, seed=4)
    ingest_landed_files(warehouse)
    labelled = labelled_rows_after(warehouse, 0)
    assert labelled >= warehouse.min_new_rows

    result, cursor = tick("retrain_sensor", instance)
    assert isinstance(result, dg.RunRequest)
    assert result.run_key == "ct-batch-3"
    # No golden set yet: the run builds it first.
    assert result.asset_selection == [dg.AssetKey(k) for k in CT_KEYS]
    assert result.tags["ct_assets/newest_batch"] == "3"
    assert result.tags["ct_assets/trigger"] == "rows"
    assert result.tags["dagster/max_runtime"] == str(int(warehouse.guardrails.max_run_seconds))
    assert result.tags["ct_assets/reason"].startswith(f"rows: {labelled} labelled rows")
    assert json.loads(cursor or "") == {
        "requested_batch": 3,
        "rows_since_training": labelled,
        "trigger": "rows",
    }

    again, cursor2 = tick("retrain_sensor", instance, cursor)
    assert isinstance(again, dg.SkipReason)
    assert "already requested for data up to batch 3" in (again.skip_message or "")
    assert cursor2 == cursor


def test_retrain_sensor_requests_again_after_a_blocked_challenger_once_new_data_lands(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance
) -> None:
    settings = make_settings(**small())
    init_warehouse(settings)
    land(settings, batches=3, rows=3000, seed=5)
    ingest_landed_files(settings)

    first, cursor = tick("retrain_sensor", instance)
    assert isinstance(first, dg.RunRequest)
    assert first.run_key == "ct-batch-3"
    assert run_ct(instance, first).success
    assert champion(settings) == "v0001"

    # Right after a promotion nothing is new: below the threshold, cursor untouched.
    idle, cursor_idle = tick("retrain_sensor", instance, cursor)
    assert isinstance(idle, dg.SkipReason)
    assert "0 labelled rows since champion v0001's training" in (idle.skip_message or "")
    assert cursor_idle == cursor

    # New data, and a much weaker challenger that the gate blocks.
    settings = make_settings(**small(training=WEAK))
    land(settings, batches=1, rows=3000, seed=5)
    ingest_landed_files(settings)
    second, cursor = tick("retrain_sensor", instance, cursor)
    assert isinstance(second, dg.RunRequest)
    assert second.run_key == "ct-batch-4"
    assert second.asset_selection == [dg.AssetKey(k) for k in CT_KEYS]
    assert json.loads(cursor or "") == {
        "requested_batch": 4,
        "rows_since_training": labelled_rows_after(settings, 3),
        "trigger": "rows",
    }
    blocked = run_ct(instance, second)
    assert not blocked.success
    assert champion(settings) == "v0001"

    # The champion's watermark did not move, so the rows still count, but this batch was requested.
    same, cursor_same = tick("retrain_sensor", instance, cursor)
    assert isinstance(same, dg.SkipReason)
    assert "already requested for data up to batch 4" in (same.skip_message or "")
    assert cursor_same == cursor

    # More data lands: a new request, counting every row since the (unchanged) champion's training.
    land(settings, batches=1, rows=3000, seed=5)
    ingest_landed_files(settings)
    third, cursor3 = tick("retrain_sensor", instance, cursor)
    assert isinstance(third, dg.RunRequest)
    assert third.run_key == "ct-batch-5"
    rows_since = labelled_rows_after(settings, 3)
    assert rows_since > labelled_rows_after(settings, 4)
    assert json.loads(cursor3 or "") == {
        "requested_batch": 5,
        "rows_since_training": rows_since,
        "trigger": "rows",
    }


def test_retrain_sensor_skips_while_another_process_holds_the_warehouse(
    warehouse: Settings, instance: dg.DagsterInstance
) -> None:
    land(warehouse, batches=3, rows=500, seed=6)
    ingest_landed_files(warehouse)
    # Without a snapshot to answer from, the sensor must open DuckDB, which the holder has locked.
    snapshot_path(warehouse).unlink()
    with holding(warehouse, "rw") as holder:
        pid = holder.pid
        result, cursor = tick("retrain_sensor", instance)
        assert isinstance(result, dg.SkipReason)
        message = result.skip_message or ""
        assert "locked by another process" in message
        assert str(pid) in message
        assert cursor is None

    # Released: the next tick requests the run.
    result, cursor = tick("retrain_sensor", instance)
    assert isinstance(result, dg.RunRequest)
    assert result.run_key == "ct-batch-3"
    assert json.loads(cursor or "")["requested_batch"] == 3


def test_every_writer_leaves_a_snapshot_the_sensor_answers_from_even_while_the_warehouse_is_held(
    warehouse: Settings, instance: dg.DagsterInstance
) -> None:
    land(warehouse, batches=3, rows=500, seed=6)
    ingest_landed_files(warehouse)
    with connect_reader(warehouse) as con:
        truth = read_trigger_inputs(con)
    inputs, source = load_trigger_inputs(warehouse)
    assert source == "snapshot"
    assert inputs == truth
    assert inputs.newest_batch_id == 3 and inputs.rows_since_training == labelled_rows_after(warehouse, 0)

    # A writer that has not written anything yet changes no file: the snapshot still holds, and the
    # tick needs no DuckDB connection at all (the one it would open is locked).
    with holding(warehouse, "rw"):
        result, _ = tick("retrain_sensor", instance)
        assert isinstance(result, dg.RunRequest)
        assert result.run_key == "ct-batch-3"


def test_a_write_from_another_tool_invalidates_the_snapshot_and_the_next_read_refreshes_it(
    warehouse: Settings,
) -> None:
    land(warehouse, batches=2, rows=500, seed=7)
    ingest_landed_files(warehouse)
    assert load_trigger_inputs(warehouse)[1] == "snapshot"
    before = load_trigger_inputs(warehouse)[0]

    # Something outside ct_assets (a notebook, a repair script) writes to the warehouse directly.
    con = duckdb.connect(str(warehouse.paths.warehouse))
    con.execute("UPDATE ingest_log SET rows_labelled = rows_labelled + 1000 WHERE batch_id = 2")
    con.close()

    assert snapshot_inputs(warehouse) is None  # the stamp no longer matches the files
    inputs, source = load_trigger_inputs(warehouse)
    assert source == "warehouse"
    assert inputs.rows_since_training == before.rows_since_training + 1000
    again, source = load_trigger_inputs(warehouse)
    assert source == "snapshot" and again == inputs

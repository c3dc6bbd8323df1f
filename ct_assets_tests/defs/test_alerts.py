"""Alerts: a warehouse row, a log line and a JSON POST to a webhook (a local HTTP server started here),
raised by a gate block, a freshness breach or a run that fails for another reason; never repeated for
the same cause while it is open."""

import json
import os
import time
from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

import dagster as dg
import pytest

from ct_assets.config import Settings
from ct_assets.core import alerts, registry
from ct_assets.defs.resources import SettingsResource
from ct_assets.defs.sensors import run_failure_alert_sensor
from ct_assets.store.warehouse import connect_reader, init_warehouse
from ct_assets.tools.simulator import SimulationOptions, simulate
from ct_assets_tests.helpers.config import WEAK, small
from ct_assets_tests.helpers.runs import run
from ct_assets_tests.helpers.servers import Webhook, webhook_server

ALERT_COLUMNS = ("alert_id", "raised_at", "kind", "cause", "message", "details", "delivered", "resolved_at")


@pytest.fixture
def webhook(monkeypatch: pytest.MonkeyPatch) -> Iterator[Webhook]:
    """A local webhook receiver; proxies unset, so that the POST reaches 127.0.0.1 directly."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    with webhook_server() as hook:
        yield hook


def alert_rows(settings: Settings) -> list[dict[str, Any]]:
    with connect_reader(settings) as con:
        rows = con.execute(f"SELECT {', '.join(ALERT_COLUMNS)} FROM alerts ORDER BY alert_id").fetchall()
    return [dict(zip(ALERT_COLUMNS, r, strict=True)) for r in rows]


def run_logs(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> list[str]:
    return [e.user_message for e in instance.all_logs(result.run_id) if e.user_message]


def failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    return sorted(
        e.check_name
        for e in result.get_asset_check_evaluations()
        if e.asset_key == dg.AssetKey("validation_report") and not e.passed
    )


def champion_then(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, **tables: Any
) -> Settings:
    """A first champion (v0001) promoted under `tables` merged over the small configuration."""
    settings = make_settings(**small(**tables))
    init_warehouse(settings)
    simulate(settings, SimulationOptions(batches=3, rows=3000, seed=1))
    assert run(instance, "ingest_job").success
    assert run(instance, "ct_job").success
    return settings


def fail_sensor(instance: dg.DagsterInstance, result: dg.ExecuteInProcessResult) -> None:
    """Evaluate run_failure_alert_sensor on a failed run, as the daemon would."""
    context = dg.build_run_status_sensor_context(
        sensor_name=run_failure_alert_sensor.name,
        dagster_event=result.get_run_failure_event(),
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        resources={"settings": SettingsResource()},
    ).for_run_failure()
    run_failure_alert_sensor(context)


# -------------------------------------------------------------------------------------------- blocks


def test_a_blocked_challenger_raises_one_block_alert_posted_to_the_webhook(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, webhook: Webhook
) -> None:
    hook = {"webhook_url": webhook.url}
    settings = champion_then(make_settings, instance, alerts=hook)
    assert alert_rows(settings) == []  # a promotion raises nothing
    assert webhook.requests == []

    make_settings(**small(training=WEAK, alerts=hook))
    blocked = run(instance, "ct_job")
    assert not blocked.success
    failed = failed_checks(blocked)
    assert failed

    (row,) = alert_rows(settings)
    assert (row["kind"], row["cause"], row["resolved_at"]) == ("block", "block:v0002", None)
    assert row["message"].startswith("gate blocked challenger v0002 (champion stays v0001): ")
    assert all(name in row["message"] for name in failed)
    assert row["delivered"] == "sent (HTTP 200)"
    details = json.loads(row["details"])
    assert details["challenger"] == "v0002" and details["champion"] == "v0001"
    assert sorted(details["failed_checks"]) == failed
    assert details["report"].endswith("v0002.html")
    assert any(
        m.startswith("ALERT [block] gate blocked challenger v0002") for m in run_logs(instance, blocked)
    )

    (post,) = webhook.requests
    assert (post["method"], post["path"]) == ("POST", "/hooks/ct")
    assert post["headers"]["Content-Type"] == "application/json"
    payload = json.loads(post["body"])
    assert payload == {
        "alert_id": row["alert_id"],
        "raised_at": row["raised_at"].isoformat(),
        "kind": "block",
        "cause": "block:v0002",
        "message": row["message"],
        "details": details,
        "source": "ct_assets",
    }

    # The same cause again (the report of v0002 re-run): still blocked, not alerted twice.
    again = run(instance, "ct_job", selection=["validation_report"])
    assert not again.success and failed_checks(again) == failed
    assert len(alert_rows(settings)) == 1
    assert len(webhook.requests) == 1
    assert not any(m.startswith("ALERT [") for m in run_logs(instance, again))

    # A block is a gate decision, not a fault: the failure sensor leaves the blocked runs alone.
    fail_sensor(instance, blocked)
    fail_sensor(instance, again)
    assert [r["kind"] for r in alert_rows(settings)] == ["block"]

    # Another blocked challenger is another cause.
    assert not run(instance, "ct_job").success
    rows = alert_rows(settings)
    assert [(r["kind"], r["cause"]) for r in rows] == [("block", "block:v0002"), ("block", "block:v0003")]
    assert [json.loads(p["body"])["cause"] for p in webhook.posts()] == ["block:v0002", "block:v0003"]
    with connect_reader(settings) as con:
        assert registry.champion(con) == "v0001"


def test_without_a_webhook_nothing_is_posted(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, webhook: Webhook
) -> None:
    settings = champion_then(make_settings, instance)
    assert settings.webhook_url == ""
    make_settings(**small(training=WEAK))
    assert not run(instance, "ct_job").success
    (row,) = alert_rows(settings)
    assert (row["kind"], row["delivered"]) == ("block", "no webhook configured")
    assert webhook.requests == []


def test_an_unreachable_webhook_is_recorded_not_raised(
    make_settings: Callable[..., Settings], webhook: Webhook
) -> None:
    settings = make_settings(alerts={"webhook_url": "http://127.0.0.1:9/hooks"})  # nothing listens there
    init_warehouse(settings)
    now = datetime(2025, 1, 1)
    alert = alerts.raise_alert(settings, kind="failure", cause="failure:x", message="m", now=now)
    assert alert is not None
    (row,) = alert_rows(settings)
    assert row["delivered"].startswith("webhook failed: ")
    assert webhook.requests == []


# ----------------------------------------------------------------------------------------- freshness


def test_a_freshness_breach_alerts_once_and_closes_when_the_check_passes(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, webhook: Webhook
) -> None:
    hook = {"webhook_url": webhook.url}
    settings = make_settings(**small(freshness={"max_file_age_hours": 24}, alerts=hook))
    init_warehouse(settings)
    old = time.time() - 72 * 3600
    for path in simulate(settings, SimulationOptions(batches=1, rows=300, seed=3)):
        os.utime(path, (old, old))
    ingested = run(instance, "ingest_job")
    assert ingested.success
    (fresh,) = [
        e for e in ingested.get_asset_check_evaluations() if e.check_name == "raw_deltas_newest_file_fresh"
    ]
    assert not fresh.passed

    rows = alert_rows(settings)
    (row,) = [r for r in rows if r["cause"] == "freshness:file_age"]
    assert row["kind"] == "freshness"
    assert row["resolved_at"] is None
    assert row["message"].startswith("no new file for 72.")
    assert "(limit 24.0 h)" in row["message"] or "(limit 24 h)" in row["message"]
    assert any(m.startswith("ALERT [freshness] no new file for") for m in run_logs(instance, ingested))
    posted = [json.loads(p["body"]) for p in webhook.posts()]
    assert [(p["kind"], p["cause"]) for p in posted] == [("freshness", "freshness:file_age")]

    # Still breached on the next check: not repeated.
    assert run(instance, "freshness_job").success
    assert [r["cause"] for r in alert_rows(settings)] == ["freshness:file_age"]
    assert len(webhook.posts()) == 1

    # A new file lands: the check passes and the alert closes.
    simulate(settings, SimulationOptions(batches=1, rows=300, seed=4))
    healed = run(instance, "freshness_job")
    (fresh,) = [
        e for e in healed.get_asset_check_evaluations() if e.check_name == "raw_deltas_newest_file_fresh"
    ]
    assert fresh.passed
    (row,) = alert_rows(settings)
    assert row["resolved_at"] is not None and row["resolved_at"] >= row["raised_at"]
    assert len(webhook.posts()) == 1  # closing is not a new alert
    with connect_reader(settings) as con:
        assert alerts.open_alerts(con) == []

    # A later breach is a new alert (the old one is closed).
    make_settings(**small(freshness={"max_file_age_hours": 0.0}, alerts=hook))
    time.sleep(0.05)
    assert run(instance, "freshness_job").success
    rows = alert_rows(settings)
    assert [(r["cause"], r["resolved_at"] is None) for r in rows] == [
        ("freshness:file_age", False),
        ("freshness:file_age", True),
    ]
    assert len(webhook.posts()) == 2


# -------------------------------------------------------------------------------- failed runs (sensor)


def test_a_run_failing_for_another_reason_is_alerted_as_a_failure_once(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, webhook: Webhook
) -> None:
    hook = {"webhook_url": webhook.url}
    settings = champion_then(make_settings, instance, alerts=hook)
    make_settings(**small(training={"bagging_fraction": 2.0}, alerts=hook))  # LightGBM refuses it
    broken = run(instance, "ct_job")
    assert not broken.success
    assert [f.step_key for f in broken.get_step_failure_events()] == ["challenger_model"]
    assert alert_rows(settings) == []  # the run itself raises no alert: the sensor does

    fail_sensor(instance, broken)
    (row,) = alert_rows(settings)
    assert row["kind"] == "failure"
    assert row["cause"].startswith("failure:ct_job:challenger_model:")
    assert row["message"].startswith(f"ct_job run {broken.run_id} failed at challenger_model: ")
    assert "bagging_fraction" in row["message"]
    assert json.loads(row["details"]) == {
        "run_id": broken.run_id,
        "job": "ct_job",
        "step": "challenger_model",
    }
    (post,) = webhook.posts()
    payload = json.loads(post["body"])
    assert (payload["kind"], payload["cause"], payload["alert_id"]) == (
        "failure",
        row["cause"],
        row["alert_id"],
    )

    # The daemon ticking again, or the same fault in a new run: the same cause, not alerted again.
    fail_sensor(instance, broken)
    again = run(instance, "ct_job")
    assert not again.success
    fail_sensor(instance, again)
    assert len(alert_rows(settings)) == 1
    assert len(webhook.posts()) == 1
    with connect_reader(settings) as con:
        assert registry.champion(con) == "v0001"


def test_a_cycle_whose_ct_run_fails_alerts_once(
    make_settings: Callable[..., Settings], instance: dg.DagsterInstance, webhook: Webhook
) -> None:
    """Runs that `ct-assets cycle` executes in-process are not seen by the daemon's failure sensor (they
    belong to no code location), so the cycle alerts on its failed CT run itself: once per cause."""
    from ct_assets.commands.cycle import run_cycle

    hook = {"webhook_url": webhook.url}
    settings = champion_then(make_settings, instance, alerts=hook)
    broken = make_settings(**small(training={"bagging_fraction": 2.0}, alerts=hook))
    first = run_cycle(broken, force=True)
    assert first["verdict"] == "failed"
    assert first["error"].startswith("challenger_model: ")
    (row,) = alert_rows(settings)
    assert (row["kind"], row["delivered"]) == ("failure", "sent (HTTP 200)")
    assert row["message"].startswith(f"ct_job run {first['runs']['ct']} failed: challenger_model: ")
    (post,) = webhook.posts()
    assert json.loads(post["body"])["kind"] == "failure"

    second = run_cycle(broken, force=True)
    assert second["verdict"] == "failed" and second["runs"]["ct"] != first["runs"]["ct"]
    assert len(alert_rows(settings)) == 1
    assert len(webhook.posts()) == 1

from datetime import datetime

import dagster as dg

from ct_assets.common.clock import utc_now
from ct_assets.core import alerts
from ct_assets.core.ingest import landing
from ct_assets.core.triggers.freshness import freshness
from ct_assets.defs.assets.ingestion import raw_deltas
from ct_assets.defs.assets.predictions import predictions
from ct_assets.defs.resources import SettingsResource
from ct_assets.store.warehouse import connect_reader

"""Freshness checks: are files still landing, and how far the champion's training data lags the newest rows
it scores.

Warnings, not gates: staleness is a signal. A breach raises one alert per cause until the check passes.
"""


def _hours(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} h"


@dg.asset_check(asset=raw_deltas, name="raw_deltas_newest_file_fresh", blocking=False)
def raw_deltas_newest_file_fresh(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource
) -> dg.AssetCheckResult:
    """The newest landed file is younger than [freshness] max_file_age_hours (a warning: staleness is a signal)."""
    s = settings.load()
    now = utc_now()
    pending = [f.landed_at for f in landing.ready_files(s.paths.landing)]
    with connect_reader(s, wait_seconds=30) as con:
        fr = freshness(con, s, now, pending)
        open_before = alerts.has_open(con, "freshness:file_age")
    limit = s.freshness.max_file_age_hours
    passed = fr.file_age_hours is not None and fr.file_age_hours <= limit
    _alert_on_breach(
        context,
        s,
        "freshness:file_age",
        passed,
        now,
        f"no new file for {_hours(fr.file_age_hours)} (limit {limit} h) in {s.paths.landing}",
        open_before,
    )
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"newest file landed {_hours(fr.file_age_hours)} ago; limit {limit} h",
        metadata={
            "newest_file_landed_at": _iso(fr.newest_file_landed_at),
            "file_age_hours": fr.file_age_hours if fr.file_age_hours is not None else -1.0,
            "limit_hours": limit,
        },
    )


# additional_deps: in the ingest job it must run after raw_deltas and predictions, on the rows that run
# appended and scored.
@dg.asset_check(
    asset="champion_model",
    name="champion_model_data_lag_within_limit",
    blocking=False,
    additional_deps=[raw_deltas, predictions],
)
def champion_model_data_lag_within_limit(
    context: dg.AssetCheckExecutionContext, settings: SettingsResource
) -> dg.AssetCheckResult:
    """The newest event time among the rows the champion scored (the newest ingested one before any row was
    scored) minus the newest event time it trained on stays within [freshness] max_data_lag_hours (a
    warning: a stale champion is a signal, not a gate)."""
    s = settings.load()
    now = utc_now()
    with connect_reader(s, wait_seconds=30) as con:
        fr = freshness(con, s, now)
        open_before = alerts.has_open(con, "freshness:data_lag")
    limit = s.freshness.max_data_lag_hours
    if fr.champion_event_time is None:
        passed, text = False, "no champion yet: every ingested row is unserved by a model"
    else:
        passed = fr.data_lag_hours is not None and fr.data_lag_hours <= limit
        text = (
            f"champion trained on data up to {_iso(fr.champion_event_time)}; lag {_hours(fr.data_lag_hours)} "
            f"behind the newest {fr.lag_measured_on}"
        )
        _alert_on_breach(
            context, s, "freshness:data_lag", passed, now, f"{text} (limit {limit} h)", open_before
        )
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"{text}; limit {limit} h",
        metadata={
            "newest_ingested_event_time": _iso(fr.newest_event_time),
            "newest_scored_event_time": _iso(fr.newest_scored_event_time),
            "lag_measured_on": fr.lag_measured_on,
            "champion_newest_event_time": _iso(fr.champion_event_time),
            "data_lag_hours": fr.data_lag_hours if fr.data_lag_hours is not None else -1.0,
            "limit_hours": limit,
        },
    )


def _alert_on_breach(
    context, s, cause: str, passed: bool, now: datetime, message: str, open_before: bool
) -> None:
    """A breach raises one alert per cause until the check passes again, which closes it (a pass with
    no alert open, as `open_before` read, writes nothing)."""
    if passed:
        if open_before:
            alerts.close_alerts(s, cause, now)
    else:
        alerts.raise_alert(s, kind="freshness", cause=cause, message=message, now=now, logger=context.log)


def _iso(value: datetime | None) -> str:
    return value.isoformat(sep=" ", timespec="seconds") if value else "none"

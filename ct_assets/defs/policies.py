"""Freshness policies the Dagster UI shows, from the configured limits, attached when the definitions
are built: `raw_deltas` fails past [freshness] max_file_age_hours, `champion_model` past [retrain]
max_champion_age_hours (0: off, no policy)."""

from datetime import timedelta

import dagster as dg

from ct_assets.config import Settings

# The UI turns yellow halfway to a limit: time to look before the checks and alerts fire at the limit,
# without an asset landing on a normal cadence spending most of its time in warning.
WARN_FRACTION = 0.5
SMALLEST_WINDOW = timedelta(minutes=1)  # Dagster refuses shorter windows


def time_window(limit_hours: float) -> dg.FreshnessPolicy | None:
    """Fail past `limit_hours` (at least a minute), warn past WARN_FRACTION of it; None when the limit
    is 0 (off)."""
    if limit_hours <= 0:
        return None
    fail = max(timedelta(hours=limit_hours), SMALLEST_WINDOW)
    warn = fail * WARN_FRACTION
    return dg.FreshnessPolicy.time_window(
        fail_window=fail, warn_window=warn if warn >= SMALLEST_WINDOW else None
    )


def freshness_policies(settings: Settings) -> dict[str, dg.FreshnessPolicy | None]:
    """Asset name -> its freshness policy under these settings (assets not named have none)."""
    return {
        "raw_deltas": time_window(settings.freshness.max_file_age_hours),
        "champion_model": time_window(settings.retrain.max_champion_age_hours),
    }

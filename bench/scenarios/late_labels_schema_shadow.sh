#!/bin/bash
# Issue 13's scenarios through the console script, default configuration, in a scratch folder (argument 1,
# default /tmp/ct-issue13; wiped first). Needs `ct-assets` and the project's python on PATH
# (`PATH=.venv/bin:$PATH bench/scenarios/late_labels_schema_shadow.sh`).
#  1. 20,000 rows, 60 % of their labels withheld, then the same rows again with labels: the labels attach
#     and, counted toward rows_since_training, trigger retraining.
#  2. An optional feature (tenure_years) added after data exists; a required one refused.
#  3. A blocked challenger (metric_floor 0.99 for this step only) shadow-scores the rows that land while it
#     awaits review; its report's JSON holds the shadow evaluation.
CT=ct-assets; PY=python
W=${1:-/tmp/ct-issue13}; rm -rf "$W"; mkdir -p "$W"; cd "$W" || exit 1
unset CT_ASSETS_CONFIG; export DAGSTER_HOME=$W/data/dagster
$CT init >/dev/null
$CT simulate --batches 1 --rows 20000 --seed 1 >/dev/null
echo "== first champion"; $CT cycle --json
# batch 2: generated labelled, kept aside; 60% of its labels withheld in the file that lands
F=$($CT simulate --batches 1 --rows 20000 --seed 1); mkdir -p held; mv $F held/full.parquet
$PY - <<'PY'
import polars as pl, numpy as np
f = pl.read_parquet("held/full.parquet")
drop = np.random.default_rng(7).random(f.height) < 0.6
f.with_columns(pl.when(pl.Series(drop)).then(None).otherwise(pl.col("label")).alias("label")).write_parquet("data/landing/batch2_unlabelled.parquet")
print("landed rows", f.height, "without label", int(drop.sum()))
PY
echo "== rows with 60% of labels missing"; $CT cycle --json
$CT status --json
cp held/full.parquet data/landing/batch2_labelled_again.parquet
echo "== the same rows again, now labelled"; $CT cycle --json
$CT status --json
$PY - <<'PY'
import duckdb
con = duckdb.connect("data/warehouse.duckdb", read_only=True)
print(con.sql("SELECT file_name, status, rows, rows_labelled, rows_duplicate, labels_attached, labels_pending, labels_conflict FROM ingest_log ORDER BY entry_id"))
print(con.sql("SELECT status, count(*), round(avg(delay_seconds)/3600,1) AS mean_delay_h FROM label_events GROUP BY 1"))
print(con.sql("SELECT action, version, reason FROM ledger ORDER BY entry_id"))
PY
$CT config > base.toml
cp base.toml tenure.toml; printf '\n[features.tenure_years]\nkind = "numeric"\nmin = 0\nmax = 60\nrequired = false\n' >> tenure.toml
cp base.toml required.toml; printf '\n[features.tenure_years]\nkind = "numeric"\nmin = 0\nmax = 60\nrequired = true\n' >> required.toml
land() {  # land N rows with tenure_years as file NAME
  F=$(env -u CT_ASSETS_CONFIG $CT simulate --batches 1 --rows $1 --seed 1)
  $PY -c "
import polars as pl, sys
f = pl.read_parquet('$F'); f.with_columns((pl.col('tenure_months') / 12).round(2).alias('tenure_years')).write_parquet('data/landing/$2.parquet')
" && rm $F
}
echo "== a required feature added to a warehouse with rows"; CT_ASSETS_CONFIG=$W/required.toml $CT cycle --json; echo "rc=$?"
export CT_ASSETS_CONFIG=$W/tenure.toml
land 20000 with_tenure
echo "== an optional feature added; 20000 rows carrying it"; $CT cycle --json
$PY - <<'PY'
import duckdb, json, glob
con = duckdb.connect("data/warehouse.duckdb", read_only=True)
print(con.sql("SELECT * FROM schema_changes"))
print(con.sql("SELECT count(*) AS rows, count(tenure_years) AS with_tenure FROM raw_deltas"))
for f in sorted(glob.glob("data/reports/v*.json"))[-1:]:
    r = json.load(open(f)); print(f, {k: r.get(k) for k in ("passed", "golden_compared", "holdout_compared", "features_only_one_model_uses")})
PY
sed "s/^metric_floor = .*/metric_floor = 0.99/" tenure.toml > strict.toml
export CT_ASSETS_CONFIG=$W/strict.toml
land 20000 before_shadow
echo "== a challenger blocked (metric_floor 0.99 for this scenario)"; $CT cycle --json
land 8000 live_rows
echo "== 8000 live rows land while it awaits review"; $CT cycle --json

$PY - <<'PY'
import duckdb, json, glob
con = duckdb.connect("data/warehouse.duckdb", read_only=True)
print(con.sql("SELECT role, model_version, count(*) AS rows, round(avg(score),4) AS mean_score, sum(decision::INT) AS positives FROM predictions GROUP BY ALL ORDER BY 2"))
for f in sorted(glob.glob("data/reports/v*.json"))[-1:]:
    print(f, json.dumps(json.load(open(f)).get("shadow"), indent=1)[:3000])
PY
$PY -c "import json; print(json.dumps(json.load(open(\"data/reports/v0004.json\"))[\"shadow\"], indent=1))"

"""A delta that passes validation comes back from the warehouse exactly as it went in (values and
types, in canonical order), whatever representation the file used for it; its recorded data hash is the
hash of exactly those rows, and the file is archived as landed.

Great Expectations costs about half a second per validated file, so this property runs 25 examples."""

from hypothesis import given

from ct_assets.core.ingest.ingest import ingest_landed_files
from ct_assets.store.hashing import file_sha256
from ct_assets.store.sql import fetch_one, fetch_value, quote
from ct_assets.store.warehouse import connect_reader
from ct_assets_tests.robustness.properties.strategies import (
    COLUMNS,
    NOW,
    ROW_ID,
    SCHEMA,
    TIME,
    Delta,
    assert_identical,
    canonical,
    content_hash,
    folder_names,
    fresh_warehouse,
    ingesting,
    land,
    valid_deltas,
)


@ingesting(25)
@given(delta=valid_deltas())
def test_a_valid_delta_round_trips_unchanged_through_the_warehouse(delta: Delta) -> None:
    n = delta.expected.height
    with fresh_warehouse() as s:
        landed = land(s, delta.file)
        landed_sha = file_sha256(landed)
        (res,) = ingest_landed_files(s, now=NOW).files
        assert res.status == "ingested", f"{res.reason} (representation {delta.representation})"
        assert (res.rows, res.rows_duplicate) == (n, 0)
        assert res.rows_labelled == delta.expected[SCHEMA.columns.label].count()

        names = ", ".join(quote(c.name) for c in COLUMNS)
        with connect_reader(s) as con:
            got = con.sql(
                f"SELECT {names} FROM raw_deltas WHERE _batch_id = $batch ORDER BY {quote(TIME)}, {quote(ROW_ID)}",
                params={"batch": res.batch_id},
            ).pl()
            total = fetch_value(con, "SELECT count(*) FROM raw_deltas")
            log = fetch_one(con, "SELECT status, batch_id, rows, data_hash, file_hash FROM ingest_log")
        assert_identical(got, canonical(delta.expected))
        assert total == n
        # The recorded data hash is the hash of exactly these rows.
        assert log == ("ingested", res.batch_id, n, content_hash(delta.expected), landed_sha)
        # The file itself is kept as landed, in the archive.
        assert folder_names(s.paths.landing) == []
        assert file_sha256(s.paths.archive / landed.name) == landed_sha

"""The files of the bad-input scenario: a frame of good rows of the default schema, and one maker per kind of
bad (or odd) file, each writing its file and returning the rows the warehouse should then hold, or None
when the file must be quarantined whole."""

from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq

from ct_assets.config import Settings
from ct_assets.store.schema import raw_delta_columns
from ct_assets.tools.simulator import SimulationOptions, generate_rows

NOW = datetime(2026, 3, 1, 12, 0, 0)
CHUNK_ROWS = 100_000  # [ingest] chunk_rows of the module's configuration
LARGE_ROWS = 300_000  # the large good file: three chunks
T0 = 1_700_000_000.0  # landing times (mtimes), so files are handled in a known order


def delta(first_id: int, n: int, seed: int, *, days_ago: float = 2.0) -> pl.DataFrame:
    """n rows of the default schema (the simulator's features and labels), ids from first_id."""
    rng = np.random.default_rng(seed)
    data = generate_rows(rng, n, SimulationOptions(batches=1, rows=n, seed=seed))
    label = data.pop("label")
    start = NOW - timedelta(days=days_ago)
    return pl.DataFrame(
        {
            "event_time": [start + timedelta(seconds=i) for i in range(n)],
            "row_id": np.arange(first_id, first_id + n, dtype=np.int64),
            **data,
            "label": label,
        }
    ).with_columns(pl.col("event_time").cast(pl.Datetime("us")))


def put(frame: pl.DataFrame, column: str, row: int, value: object) -> pl.DataFrame:
    """The frame with one value replaced (the column becomes text when the value is text)."""
    dtype = pl.String if isinstance(value, str) else frame.schema[column]
    return frame.with_columns(frame[column].cast(dtype).scatter(row, value))


def stored(frame: pl.DataFrame, settings: Settings) -> pl.DataFrame:
    """What the warehouse should hold for a frame that goes in: configured columns, NaN as null."""
    return frame.select(n for n, _ in raw_delta_columns(settings)).with_columns(
        pl.selectors.float().fill_nan(None)
    )


def flip_bytes(path: Path, start: int, count: int) -> None:
    data = bytearray(path.read_bytes())
    for i in range(start, start + count):
        data[i] ^= 0xFF
    path.write_bytes(bytes(data))


# Each maker writes one file from a frame of 200 good rows and returns the rows the warehouse should
# then hold, or None when the file must be quarantined whole.
Maker = Callable[[pl.DataFrame, Path], pl.DataFrame | None]


def renamed_column(f: pl.DataFrame, p: Path) -> None:
    f.rename({"monthly_spend": "monthly_spending"}).write_csv(p)


def extra_columns(f: pl.DataFrame, p: Path) -> pl.DataFrame:
    f.with_columns(pl.lit("free text").alias("notes"), pl.lit(7).alias("_batch_id")).write_parquet(p)
    return f


def text_in_numeric_parquet(f: pl.DataFrame, p: Path) -> None:
    f.with_columns(pl.col("tenure_months").cast(pl.String)).write_parquet(p)


def null_in_required_feature(f: pl.DataFrame, p: Path) -> None:
    put(f, "tenure_months", 4, None).write_parquet(p)


def unparseable_event_time_csv(f: pl.DataFrame, p: Path) -> None:
    put(f.with_columns(pl.col("event_time").cast(pl.String)), "event_time", 10, "yesterday").write_csv(p)


def nan_in_required_feature(f: pl.DataFrame, p: Path) -> None:
    put(f, "monthly_spend", 3, float("nan")).write_parquet(p)


def nan_in_nullable_feature(f: pl.DataFrame, p: Path) -> pl.DataFrame:
    """NaN in features that may be null, and null labels: stored as nulls, labels counted."""
    out = put(put(f, "usage_hours", 0, float("nan")), "satisfaction", 1, float("nan"))
    out = out.with_columns(out["label"].scatter([0, 1, 2], None))
    out.write_parquet(p)
    return out


def nan_in_nullable_feature_csv(f: pl.DataFrame, p: Path) -> pl.DataFrame:
    out = put(f, "usage_hours", 5, float("nan"))
    text = out.write_csv()
    assert "NaN" in text
    p.write_text(text, encoding="utf-8")
    return out


def plus_infinity(f: pl.DataFrame, p: Path) -> None:
    put(f, "monthly_spend", 8, float("inf")).write_parquet(p)


def minus_infinity_csv(f: pl.DataFrame, p: Path) -> None:
    text = put(f, "usage_hours", 6, float("-inf")).write_csv()
    assert "-inf" in text
    p.write_text(text, encoding="utf-8")


def label_outside_classes(f: pl.DataFrame, p: Path) -> None:
    put(f, "label", 5, 2).write_parquet(p)


def duplicate_ids_in_file(f: pl.DataFrame, p: Path) -> None:
    put(f, "row_id", 6, int(f["row_id"][5])).write_parquet(p)


def fractional_row_id(f: pl.DataFrame, p: Path) -> None:
    f.with_columns(f["row_id"].cast(pl.Float64).scatter(7, 0.5 + float(f["row_id"][7]))).write_parquet(p)


def future_event_time(f: pl.DataFrame, p: Path) -> None:
    put(f, "event_time", 8, NOW + timedelta(days=1)).write_parquet(p)


def ancient_event_time(f: pl.DataFrame, p: Path) -> None:
    put(f, "event_time", 8, NOW - timedelta(days=4000)).write_parquet(p)


def empty_parquet(f: pl.DataFrame, p: Path) -> None:
    p.write_bytes(b"")


def empty_csv(f: pl.DataFrame, p: Path) -> None:
    p.write_bytes(b"")


def header_only_csv(f: pl.DataFrame, p: Path) -> None:
    p.write_text(",".join(f.columns) + "\n", encoding="utf-8")


def zero_row_parquet(f: pl.DataFrame, p: Path) -> None:
    f.head(0).write_parquet(p)


def truncated_parquet(f: pl.DataFrame, p: Path) -> None:
    f.write_parquet(p)
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])


def corrupted_parquet_footer(f: pl.DataFrame, p: Path) -> None:
    f.write_parquet(p)
    flip_bytes(p, p.stat().st_size - 200, 150)  # inside the footer's metadata


def corrupted_parquet_page(f: pl.DataFrame, p: Path) -> None:
    # A producer that writes page checksums: damage inside a data page is then detected on read.
    pq.write_table(f.to_arrow(), p, write_page_checksum=True, compression="none")
    flip_bytes(p, 200, 32)


def not_utf8_csv(f: pl.DataFrame, p: Path) -> None:
    text = f.write_csv()
    p.write_bytes(text.replace("north", "n\u00f6rth").encode("latin-1"))


def truncated_csv(f: pl.DataFrame, p: Path) -> None:
    data = f.write_csv().encode("utf-8")
    p.write_bytes(data[: len(data) - 7])  # cut inside the last row


def ragged_row_csv(f: pl.DataFrame, p: Path) -> None:
    lines = f.write_csv().splitlines()
    lines[40] = lines[40].rsplit(",", 1)[0]  # a row one field short (its label missing)
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")


def unclosed_quote_csv(f: pl.DataFrame, p: Path) -> None:
    """An extra text column whose quote opens in data row 50 and never closes: the rest of the file
    would be swallowed into one value, and its rows lost, if the file were read as it parses."""
    lines = f.with_columns(pl.lit("ok").alias("comment")).write_csv().splitlines()
    lines[50] = lines[50].removesuffix(",ok") + ',"oops'
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")


def duplicate_header_csv(f: pl.DataFrame, p: Path) -> None:
    f.with_columns(pl.col("region").alias("region_2")).write_csv(p)
    text = p.read_text(encoding="utf-8")
    p.write_text(text.replace("region_2", "region", 1), encoding="utf-8")


def good_parquet(f: pl.DataFrame, p: Path) -> pl.DataFrame:
    f.write_parquet(p)
    return f


def good_csv(f: pl.DataFrame, p: Path) -> pl.DataFrame:
    f.write_csv(p)
    return f


def large_text_in_last_row_csv(f: pl.DataFrame, p: Path) -> None:
    big = delta(int(f["row_id"][0]), CHUNK_ROWS + 1, seed=77)
    put(big, "support_calls", CHUNK_ROWS, "three").write_csv(p)


def large_id_repeated_across_chunks(f: pl.DataFrame, p: Path) -> None:
    big = delta(int(f["row_id"][0]), CHUNK_ROWS + 1, seed=78)
    put(big, "row_id", CHUNK_ROWS, int(big["row_id"][0])).write_parquet(p)

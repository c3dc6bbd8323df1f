"""The Great Expectations 1.x suite that every landed delta must pass before it is appended.

The suite is built in code from the configuration and run on an ephemeral GX context. GX validates
pandas frames, so the polars frame is converted here, at this one boundary. GX is imported lazily
(it costs seconds to import) and its progress bars are switched off through the context.

Each expectation feeds one of the `raw_deltas` check specs, named by CHECKS.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

from ct_assets.common.heap import long_lived
from ct_assets.config import Settings
from ct_assets.config.settings import Feature

# check name -> what it asserts (the check specs of raw_deltas)
CHECKS: dict[str, str] = {
    "raw_deltas_schema_valid": "Every configured column is present with a usable type.",
    "raw_deltas_required_not_null": "Required columns (event time, row id, required features) have no nulls.",
    "raw_deltas_values_valid": "Values are within the configured ranges and categories, labels within their "
    "classes, and event times neither in the future nor older than [freshness] max_event_age_days.",
    "raw_deltas_row_ids_unique": "Row ids are unique within each delta.",
}

NUMERIC_TYPES = [
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float32",
    "float64",
    "Int64",
    "Float64",
]
TIME_TYPES = ["datetime64", "datetime64[ns]", "datetime64[us]", "datetime64[ms]", "datetime64[s]"]
FUTURE_COLUMN_SUFFIX = "__seconds_ahead"  # derived: event time minus validation time, in seconds
AGE_COLUMN_SUFFIX = "__days_old"  # derived: validation time minus event time, in days
FINITE_LIMIT = 1.0e308


@dataclass(frozen=True)
class Outcome:
    """One expectation's result, in the words the check tables show."""

    check: str
    expectation: str
    column: str
    success: bool
    observed: str
    unexpected_count: int | None
    element_count: int | None

    def describe(self) -> str:
        """One line: which column broke which expectation, how often, and what was seen."""
        parts = []
        if self.unexpected_count:
            parts.append(f"{self.unexpected_count} of {self.element_count} rows")
        if self.observed:
            parts.append(f"observed {self.observed}")
        tail = f" ({'; '.join(parts)})" if parts else ""
        return f"column '{self.column}' fails {self.expectation}{tail}"


_GX_LOCK = threading.Lock()
_GX_STATE: dict[str, Any] = {}


def _batch_definition() -> Any:
    """One ephemeral GX context per process, with progress bars off."""
    with _GX_LOCK:
        if "bd" not in _GX_STATE:
            # GX leaves about 200,000 objects to the collector, all living as long as the process.
            with long_lived():
                import great_expectations as gx
                from great_expectations.data_context.types.base import ProgressBarsConfig

                ctx = gx.get_context(mode="ephemeral")
                ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
                source = ctx.data_sources.add_pandas("ct_assets_deltas")
                asset = source.add_dataframe_asset("delta")
                _GX_STATE["bd"] = asset.add_batch_definition_whole_dataframe("whole_delta")
                _GX_STATE["gx"] = gx
        return _GX_STATE["bd"]


Expectation = tuple[str, str, Any]  # (check name, column, GX expectation)


def label_file_columns(settings: Settings) -> list[str]:
    """The columns of a label file: the row id, the label and, when configured, the label's time."""
    cols = settings.columns
    return [c for c in (cols.row_id, cols.label, cols.label_time) if c]


def is_label_file(columns: list[str], settings: Settings) -> bool:
    """A file whose columns are exactly the row id and the label (and, when [columns] label_time is set,
    optionally that column) is a label file; anything else is a file of rows."""
    cols = settings.columns
    if not cols.row_id:
        return False
    return set(columns) in ({cols.row_id, cols.label}, set(label_file_columns(settings)))


def _expectations(settings: Settings, present: set[str], labels: bool = False) -> list[Expectation]:
    """(check name, column, expectation) for a delta with the given columns: every configured column
    must exist; the rules on a column's values apply when it does. A label file (`labels`) needs its
    row id and label, both never null, and a label time (if any) not in the future."""
    import great_expectations as gx

    E = gx.expectations
    required = label_file_columns(settings)[:2] if labels else settings.stored_columns
    exist = [("raw_deltas_schema_valid", name, E.ExpectColumnToExist(column=name)) for name in required]
    if labels:
        label = settings.columns.label
        rules = [
            *_row_id_rules(E, settings),
            *_label_rules(E, settings),
            ("raw_deltas_required_not_null", label, E.ExpectColumnValuesToNotBeNull(column=label)),
            *_time_rules(E, settings, settings.columns.label_time, required=False),
        ]
    else:
        rules = [
            *_event_time_rules(E, settings),
            *_row_id_rules(E, settings),
            *(rule for f in settings.features for rule in _feature_rules(E, f)),
            *_label_rules(E, settings),
            *_exploration_rules(E, settings),
        ]
    return exist + [r for r in rules if r[1] in present]


def _time_rules(E: Any, settings: Settings, column: str | None, *, required: bool) -> list[Expectation]:
    """A time type, not in the future (and never null when `required`)."""
    if not column:
        return []
    ahead = column + FUTURE_COLUMN_SUFFIX
    out: list[Expectation] = [
        (
            "raw_deltas_schema_valid",
            column,
            E.ExpectColumnValuesToBeInTypeList(column=column, type_list=TIME_TYPES),
        ),
        (
            "raw_deltas_values_valid",
            ahead,
            E.ExpectColumnValuesToBeBetween(
                column=ahead, max_value=settings.freshness.max_future_minutes * 60.0
            ),
        ),
    ]
    if required:
        out.append(("raw_deltas_required_not_null", column, E.ExpectColumnValuesToNotBeNull(column=column)))
    return out


def _event_time_rules(E: Any, settings: Settings) -> list[Expectation]:
    """A time type, never null, not in the future, not older than [freshness] max_event_age_days."""
    et = settings.columns.event_time
    rules = _time_rules(E, settings, et, required=True)
    out: list[Expectation] = [rules[0], rules[2], rules[1]]  # type, not null, not in the future
    if settings.freshness.max_event_age_days > 0:
        old = et + AGE_COLUMN_SUFFIX
        out.append(
            (
                "raw_deltas_values_valid",
                old,
                E.ExpectColumnValuesToBeBetween(column=old, max_value=settings.freshness.max_event_age_days),
            )
        )
    return out


def _row_id_rules(E: Any, settings: Settings) -> list[Expectation]:
    """The configured type, never null, unique within the file."""
    cols = settings.columns
    rid = cols.row_id
    if not rid:
        return []
    return [
        ("raw_deltas_schema_valid", rid, _type_expectation(E, rid, cols.row_id_type == "integer")),
        ("raw_deltas_required_not_null", rid, E.ExpectColumnValuesToNotBeNull(column=rid)),
        ("raw_deltas_row_ids_unique", rid, E.ExpectColumnValuesToBeUnique(column=rid)),
    ]


def _feature_rules(E: Any, f: Feature) -> list[Expectation]:
    """Its kind's type; numeric values within [min, max] (finite when unbounded), categories within the
    configured set; no null when required."""
    out: list[Expectation] = [
        ("raw_deltas_schema_valid", f.name, _type_expectation(E, f.name, f.kind == "numeric"))
    ]
    if f.kind == "numeric":
        lo = f.min if f.min is not None else -FINITE_LIMIT
        hi = f.max if f.max is not None else FINITE_LIMIT
        out.append(
            (
                "raw_deltas_values_valid",
                f.name,
                E.ExpectColumnValuesToBeBetween(column=f.name, min_value=lo, max_value=hi),
            )
        )
    elif f.categories:
        out.append(
            (
                "raw_deltas_values_valid",
                f.name,
                E.ExpectColumnValuesToBeInSet(column=f.name, value_set=list(f.categories)),
            )
        )
    if f.required:
        out.append(("raw_deltas_required_not_null", f.name, E.ExpectColumnValuesToNotBeNull(column=f.name)))
    return out


def _label_rules(E: Any, settings: Settings) -> list[Expectation]:
    """The label's type, and only the two configured classes (null: not labelled yet)."""
    cols = settings.columns
    label = cols.label
    return [
        ("raw_deltas_schema_valid", label, _type_expectation(E, label, not cols.label_is_text)),
        (
            "raw_deltas_values_valid",
            label,
            E.ExpectColumnValuesToBeInSet(column=label, value_set=list(cols.label_classes)),
        ),
    ]


def _exploration_rules(E: Any, settings: Settings) -> list[Expectation]:
    """A 0/1 (or boolean) flag, never null."""
    flag = settings.columns.exploration
    if not flag:
        return []
    return [
        (
            "raw_deltas_schema_valid",
            flag,
            E.ExpectColumnValuesToBeInTypeList(column=flag, type_list=[*NUMERIC_TYPES, "bool"]),
        ),
        ("raw_deltas_required_not_null", flag, E.ExpectColumnValuesToNotBeNull(column=flag)),
        ("raw_deltas_values_valid", flag, E.ExpectColumnValuesToBeInSet(column=flag, value_set=[0, 1])),
    ]


def _type_expectation(E: Any, column: str, numeric: bool) -> Any:
    # Text is checked as type "str": pandas 3 turns polars strings into its "str" dtype, which an
    # in-type-list of names does not match, while this expectation does (and stays vectorised).
    if numeric:
        return E.ExpectColumnValuesToBeInTypeList(column=column, type_list=NUMERIC_TYPES)
    return E.ExpectColumnValuesToBeOfType(column=column, type_="str")


def gx_frame(frame: pl.DataFrame, settings: Settings, now: datetime, labels: bool = False) -> Any:
    """The pandas frame GX validates: the delta's configured columns plus derived ones."""
    wanted = label_file_columns(settings) if labels else settings.stored_columns
    view = frame.select([c for c in wanted if c in frame.columns])
    for t in (settings.columns.label_time,) if labels else (settings.columns.event_time,):
        if t and t in frame.columns and frame.schema[t] == pl.Datetime("us"):
            ahead = (pl.col(t) - pl.lit(now)).dt.total_microseconds()
            view = view.with_columns(
                (ahead / 1e6).alias(t + FUTURE_COLUMN_SUFFIX),
                (-ahead / 86_400e6).alias(t + AGE_COLUMN_SUFFIX),
            )
    return view.to_pandas()


def validate_delta(
    frame: pl.DataFrame, settings: Settings, now: datetime, *, labels: bool = False
) -> list[Outcome]:
    """Run the suite on one delta (already read and normalized), or on a label file (`labels`); one
    Outcome per expectation."""
    bd = _batch_definition()
    gx = _GX_STATE["gx"]
    pdf = gx_frame(frame, settings, now, labels)
    planned = _expectations(settings, set(pdf.columns), labels)
    by_id: dict[str, tuple[str, str]] = {}
    exps = []
    for check, column, exp in planned:
        exps.append(exp)
        by_id[_exp_key(exp)] = (check, column)
    suite = gx.ExpectationSuite(name="ct_assets_delta", expectations=exps)
    batch = bd.get_batch(batch_parameters={"dataframe": pdf})
    result = batch.validate(suite, result_format="SUMMARY")
    outcomes = []
    for r in result.results:
        cfg = r.expectation_config
        check, column = by_id.get(_exp_key(cfg), ("raw_deltas_schema_valid", str(cfg.kwargs.get("column"))))
        outcomes.append(_outcome(check, column, cfg.type, r.success, r.result or {}, r.exception_info))
    order = {id_: i for i, id_ in enumerate(by_id)}
    outcomes.sort(key=lambda o: (list(CHECKS).index(o.check), order.get(f"{o.expectation}|{o.column}", 0)))
    return outcomes


def _exp_key(exp: Any) -> str:
    """'type|column' of an Expectation or of the ExpectationConfiguration in its result."""
    if hasattr(exp, "configuration"):
        return f"{exp.expectation_type}|{exp.configuration.kwargs.get('column')}"
    return f"{exp.type}|{exp.kwargs.get('column')}"


def _outcome(
    check: str, column: str, etype: str, success: bool | None, result: dict[str, Any], exc: Any
) -> Outcome:
    display_column = column.removesuffix(FUTURE_COLUMN_SUFFIX).removesuffix(AGE_COLUMN_SUFFIX)
    observed = result.get("observed_value")
    examples = result.get("partial_unexpected_list") or []
    if isinstance(exc, dict) and exc.get("raised_exception"):
        lines = str(exc.get("exception_message") or "error").strip().splitlines() or ["error"]
        observed_text = lines[0][:200]  # reasons stay one line
    elif etype == "expect_column_to_exist":
        observed_text = "present" if success else "missing"
    elif column.endswith(FUTURE_COLUMN_SUFFIX) and examples:
        worst = max(float(x) for x in examples)
        observed_text = f"up to {worst / 60:.1f} minutes in the future"
    elif column.endswith(AGE_COLUMN_SUFFIX) and examples:
        worst = max(float(x) for x in examples)
        observed_text = f"up to {worst:.1f} days old"
    elif observed is not None:
        observed_text = str(observed)
    elif examples:
        observed_text = "e.g. " + ", ".join(_short(x) for x in examples[:3])
    else:
        observed_text = ""
    return Outcome(
        check=check,
        expectation=etype,
        column=display_column,
        success=bool(success),
        observed=observed_text,
        unexpected_count=result.get("unexpected_count"),
        element_count=result.get("element_count"),
    )


def _short(x: Any) -> str:
    if isinstance(x, float) and not math.isfinite(x):
        return str(x)
    text = repr(x)
    return text if len(text) <= 40 else text[:37] + "..."


def merge_outcomes(before: list[Outcome], chunk: list[Outcome]) -> list[Outcome]:
    """The outcomes of a file validated chunk by chunk: an expectation holds when it held in every chunk;
    counts add up; what was observed is taken from the first chunk where it failed."""
    if not before:
        return list(chunk)
    by_key = {(o.check, o.expectation, o.column): o for o in chunk}
    merged = []
    for a in before:
        b = by_key.pop((a.check, a.expectation, a.column), None)
        if b is None:
            merged.append(a)
            continue
        merged.append(
            Outcome(
                check=a.check,
                expectation=a.expectation,
                column=a.column,
                success=a.success and b.success,
                observed=b.observed if a.success and not b.success else a.observed,
                unexpected_count=_add(a.unexpected_count, b.unexpected_count),
                element_count=_add(a.element_count, b.element_count),
            )
        )
    return merged + list(by_key.values())


def _add(a: int | None, b: int | None) -> int | None:
    return None if a is None and b is None else (a or 0) + (b or 0)


def first_failure(outcomes: list[Outcome]) -> Outcome | None:
    for o in outcomes:
        if not o.success:
            return o
    return None

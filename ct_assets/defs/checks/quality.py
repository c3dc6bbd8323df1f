from collections.abc import Iterator

import dagster as dg

from ct_assets.core.ingest.ingest import IngestReport
from ct_assets.core.ingest.quality import CHECKS
from ct_assets.defs.metadata import table

"""The one adapter from Great Expectations outcomes to Dagster asset check results (raw_deltas' checks)."""


CHECK_COLUMNS = ["file", "expectation", "column", "success", "observed", "unexpected_count", "element_count"]


def gx_check_results(report: IngestReport) -> Iterator[dg.AssetCheckResult]:
    """The one adapter from Great Expectations outcomes to Dagster check results: one result per
    check spec, covering every file of this run, with a table of what each expectation saw."""
    validated = [f for f in report.files if f.outcomes]
    unreadable = [f for f in report.files if f.status == "quarantined" and not f.outcomes]
    for check, description in CHECKS.items():
        rows = []
        failed_files = set()
        for f in validated:
            for o in f.outcomes:
                if o.check != check:
                    continue
                rows.append(
                    {
                        "file": f.name,
                        "expectation": o.expectation,
                        "column": o.column,
                        "success": o.success,
                        "observed": o.observed,
                        "unexpected_count": o.unexpected_count,
                        "element_count": o.element_count,
                    }
                )
                if not o.success:
                    failed_files.add(f.name)
        if check == "raw_deltas_schema_valid":
            for f in unreadable:
                rows.append(
                    {
                        "file": f.name,
                        "expectation": "file is readable",
                        "column": "",
                        "success": False,
                        "observed": f.reason.split(": ", 1)[-1],
                        "unexpected_count": None,
                        "element_count": None,
                    }
                )
                failed_files.add(f.name)
        rows.sort(key=lambda r: (r["success"], r["file"]))  # failures first
        yield dg.AssetCheckResult(
            check_name=check,
            passed=not failed_files,
            severity=dg.AssetCheckSeverity.WARN,
            description=description,
            metadata={
                "files_checked": len(validated)
                + (len(unreadable) if check == "raw_deltas_schema_valid" else 0),
                "files_failed": len(failed_files),
                "failed_files": ", ".join(sorted(failed_files)) or "none",
                "expectations": table(rows, CHECK_COLUMNS),
            },
        )

"""The landing folder convention: which files are ready, and where handled files go."""

import json
import os
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ct_assets.core.ingest.landing import destination, is_ready_name, move, ready_files, write_reason


def touch(path: Path, mtime: float, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    os.utime(path, (mtime, mtime))
    return path


def test_ready_files_takes_only_finished_data_files(tmp_path: Path) -> None:
    landing = tmp_path / "landing"
    t0 = 1_700_000_000.0
    touch(landing / "b.csv", t0 + 1)
    touch(landing / "a.parquet", t0 + 2, b"12345")
    touch(landing / "UPPER.PARQUET", t0 + 3)
    for name in (
        "c.parquet.part",
        "d.csv.tmp",
        "e.parquet.PART",
        ".f.parquet",
        ".g.csv.part",
        "h.txt",
        "i.json",
        "j.parquet.bak",
        "k.csvx",
        "parquet",
        "reason.csv.reason.txt",
    ):
        touch(landing / name, t0)
    (landing / "dir.parquet").mkdir()
    touch(landing / "sub" / "nested.parquet", t0)
    (landing / "link.parquet").symlink_to(landing / "a.parquet")
    (landing / "dangling.csv").symlink_to(tmp_path / "missing.csv")

    ready = ready_files(landing)
    assert [f.name for f in ready] == ["b.csv", "a.parquet", "UPPER.PARQUET"]
    a = ready[1]
    assert a.path == landing / "a.parquet"
    assert a.size == 5
    assert a.mtime == t0 + 2
    assert a.landed_at == datetime.fromtimestamp(t0 + 2, tz=UTC).replace(tzinfo=None)
    assert a.landed_at.tzinfo is None


def test_ready_files_orders_by_time_then_name(tmp_path: Path) -> None:
    t0 = 1_700_000_000.0
    touch(tmp_path / "z.csv", t0)
    touch(tmp_path / "y.csv", t0 + 10)
    touch(tmp_path / "a.csv", t0 + 10)
    touch(tmp_path / "m.parquet", t0 - 10)
    assert [f.name for f in ready_files(tmp_path)] == ["m.parquet", "z.csv", "a.csv", "y.csv"]


def test_ready_files_of_a_missing_folder_is_empty(tmp_path: Path) -> None:
    assert ready_files(tmp_path / "nope") == []
    touch(tmp_path / "file.parquet", 1.0)
    assert ready_files(tmp_path / "file.parquet") == []


@pytest.mark.parametrize(
    ("name", "ready"),
    [
        ("delta.parquet", True),
        ("delta.csv", True),
        ("Delta.Csv", True),
        ("delta.parquet.part", False),
        ("delta.parquet.tmp", False),
        (".delta.parquet", False),
        ("delta.tsv", False),
        ("delta", False),
    ],
)
def test_is_ready_name(name: str, ready: bool) -> None:
    assert is_ready_name(name) is ready


def test_destination_keeps_the_name_unless_taken(tmp_path: Path) -> None:
    assert destination(tmp_path, "d.parquet", "abc") == tmp_path / "d.parquet"
    (tmp_path / "d.parquet").write_bytes(b"")
    assert destination(tmp_path, "d.parquet", "abc") == tmp_path / "d.abc.parquet"
    (tmp_path / "noext").write_bytes(b"")
    assert destination(tmp_path, "noext", "abc") == tmp_path / "noext.abc"
    assert destination(tmp_path / "missing", "d.parquet", "abc") == tmp_path / "missing" / "d.parquet"


def test_move_creates_the_folder_and_keeps_the_bytes(tmp_path: Path) -> None:
    src = touch(tmp_path / "landing" / "d.csv", 1.0, b"a,b\n1,2\n")
    target = tmp_path / "archive" / "deep" / "d.csv"
    move(src, target)
    assert not src.exists()
    assert target.read_bytes() == b"a,b\n1,2\n"


def test_write_reason_writes_the_line_then_the_details(tmp_path: Path) -> None:
    target = tmp_path / "quarantine" / "bad.parquet"
    details = [{"column": "x", "observed": datetime(2024, 1, 1)}]
    path = write_reason(target, "bad.parquet: column 'x' fails something", details)
    assert path == tmp_path / "quarantine" / "bad.parquet.reason.txt"
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines[0] == "bad.parquet: column 'x' fails something"
    assert lines[1] == ""
    assert json.loads("\n".join(lines[2:])) == [{"column": "x", "observed": "2024-01-01 00:00:00"}]
    assert sorted(p.name for p in path.parent.iterdir()) == ["bad.parquet.reason.txt"]  # no temp file left

    plain = write_reason(tmp_path / "q" / "empty.csv", "empty.csv: is empty (0 bytes)")
    assert plain.read_text(encoding="utf-8") == "empty.csv: is empty (0 bytes)\n"

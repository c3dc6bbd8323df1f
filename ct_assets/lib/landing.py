"""The landing folder convention: which files are ready, and where handled files go.

A file is ready when its name ends in .parquet or .csv and it is a regular file. Producers write
under a name starting with '.' or ending in '.part' / '.tmp' and rename when done; those are left
alone. Handled files are moved, never deleted: ingested ones to the archive, rejected ones to the
quarantine with a reason file beside them.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

READY_SUFFIXES = (".parquet", ".csv")
NOT_READY_SUFFIXES = (".part", ".tmp")


@dataclass(frozen=True)
class LandedFile:
    path: Path
    size: int
    mtime: float

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def landed_at(self) -> datetime:
        return datetime.fromtimestamp(self.mtime, tz=UTC).replace(tzinfo=None)


def is_ready_name(name: str) -> bool:
    lower = name.lower()
    return (
        not name.startswith(".") and not lower.endswith(NOT_READY_SUFFIXES) and lower.endswith(READY_SUFFIXES)
    )


def ready_files(landing: Path) -> list[LandedFile]:
    """Ready files in the landing folder (not its subfolders), oldest first, then by name."""
    if not landing.is_dir():
        return []
    out = []
    with os.scandir(landing) as it:
        for entry in it:
            if not is_ready_name(entry.name):
                continue
            try:
                if not entry.is_file(follow_symlinks=False):
                    continue  # directories and symlinks are not data files
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # renamed away while we looked
            out.append(LandedFile(Path(entry.path), st.st_size, st.st_mtime))
    out.sort(key=lambda f: (f.mtime, f.name))
    return out


def destination(folder: Path, name: str, tag: str) -> Path:
    """Where a handled file goes: its own name in `folder`, or name.<tag>.ext when that is taken."""
    target = folder / name
    if not target.exists():
        return target
    stem, dot, suffix = name.rpartition(".")
    return folder / (f"{stem}.{tag}.{suffix}" if dot else f"{name}.{tag}")


def move(file: Path, target: Path) -> None:
    """Move a handled file out of the landing folder (to the archive or the quarantine)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(str(file), target)


def write_reason(target: Path, reason: str, details: list[dict] | None = None) -> Path:
    """Write `<target>.reason.txt`: the one-line reason, then the failed expectations as JSON."""
    reason_path = target.with_name(target.name + ".reason.txt")
    reason_path.parent.mkdir(parents=True, exist_ok=True)
    body = reason + "\n"
    if details:
        body += "\n" + json.dumps(details, indent=2, default=str) + "\n"
    tmp = reason_path.with_name("." + reason_path.name + ".tmp")
    tmp.write_text(body, encoding="utf-8")
    os.replace(tmp, reason_path)
    return reason_path

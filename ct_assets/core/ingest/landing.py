"""The landing folder convention: which files are ready, and where handled files go.

A file is ready when its name ends in .parquet or .csv and it is a regular file. Producers write
under a name starting with '.' or ending in '.part' / '.tmp' and rename when done; those are left
alone, and so are directories and anything in a subfolder. A symlink with a ready name is not data
(links are never followed): ingest quarantines the link itself. Handled files are moved, never
deleted: ingested ones to the archive, rejected ones to the quarantine with a reason file beside them.
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
    is_symlink: bool = False  # a link with a ready name: quarantined, never followed

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
    return [f for f in ready_entries(landing) if not f.is_symlink]


def ready_entries(landing: Path) -> list[LandedFile]:
    """Ready files and symlinks with a ready name (which ingest quarantines unread), oldest first.

    Directories, sockets, FIFOs and devices are left alone whatever their name (opening a FIFO
    would block), and so is everything in a subfolder."""
    if not landing.is_dir():
        return []
    out = []
    with os.scandir(landing) as it:
        for entry in it:
            if not is_ready_name(entry.name):
                continue
            try:
                link = entry.is_symlink()
                if not link and not entry.is_file(follow_symlinks=False):
                    continue  # directories and special files are not data files
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # renamed away while we looked
            out.append(LandedFile(Path(entry.path), st.st_size, st.st_mtime, link))
    out.sort(key=lambda f: (f.mtime, f.name))
    return out


def display_name(name: str) -> str:
    """A file name (or path) as one printable line: bytes that are not UTF-8 become \\xNN and control
    characters (a newline, say) are escaped, so that reasons and log rows stay one line."""
    text = os.fsencode(name).decode("utf-8", "backslashreplace")
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def destination(folder: Path, name: str, tag: str) -> Path:
    """Where a handled file goes: its own name in `folder`, or name.<tag>.ext when that is taken."""
    target = folder / name
    if not target.exists():
        return target
    stem, dot, suffix = name.rpartition(".")
    return folder / (f"{stem}.{tag}.{suffix}" if dot else f"{name}.{tag}")


def move(file: Path, target: Path) -> None:
    """Move a handled file out of the landing folder (to the archive or the quarantine); a symlink is
    moved as a link, never followed."""
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

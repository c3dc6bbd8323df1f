"""Markers of the processes executing runs: a marker names a dead process only once that process is gone,
and only this host's markers count."""

import os
import socket
import subprocess
from pathlib import Path

from ct_assets.common import run_processes


def test_a_marker_is_dead_once_its_process_is_gone(tmp_path: Path) -> None:
    folder = tmp_path / run_processes.MARKERS
    folder.mkdir()
    host = socket.gethostname()
    sleeper = subprocess.Popen(["sleep", "60"])
    finished = subprocess.Popen(["true"])
    finished.wait()
    try:
        for pid in (sleeper.pid, finished.pid):
            (folder / f"{host}-{pid}").touch()
        (folder / f"some-other-host-{finished.pid}").touch()  # another machine's: not ours to judge
        assert run_processes.dead_markers(tmp_path) == [folder / f"{host}-{finished.pid}"]
    finally:
        sleeper.kill()
        sleeper.wait()
    assert run_processes.dead_markers(tmp_path) == sorted(
        folder / f"{host}-{pid}" for pid in (sleeper.pid, finished.pid)
    )


def test_this_process_leaves_and_removes_its_marker(tmp_path: Path) -> None:
    assert run_processes.dead_markers(tmp_path) == []  # no folder yet
    marker = run_processes.leave_marker(tmp_path)
    assert marker == tmp_path / run_processes.MARKERS / f"{socket.gethostname()}-{os.getpid()}"
    assert marker.is_file()
    assert run_processes.dead_markers(tmp_path) == []  # this process is alive
    run_processes.remove_marker(marker)
    assert not marker.exists()

"""The DuckDB extensions of cluster mode (ducklake, postgres_scanner, httpfs), installed from their PyPI
wheels (each holds the signed binary for DuckDB 1.5.5) into a project-owned extension directory, never
downloaded: `python -m ct_assets.store.lake_extensions` (run by `make cluster-setup`, once per host).

The directory is $CT_DUCKDB_EXTENSIONS, else `duckdb_extensions` inside the running venv."""

from __future__ import annotations

import fcntl
import importlib.util
import os
import sys
from pathlib import Path

import duckdb

from ct_assets.errors import ConfigError

# wheel package -> the name LOAD knows it by (the postgres wheel's binary loads as postgres_scanner)
EXTENSIONS = {
    "duckdb_extension_httpfs": "httpfs",
    "duckdb_extension_postgres": "postgres_scanner",
    "duckdb_extension_ducklake": "ducklake",
}
ENV = "CT_DUCKDB_EXTENSIONS"


def extension_dir() -> Path:
    return Path(os.environ.get(ENV) or Path(sys.prefix) / "duckdb_extensions")


def connection_config() -> dict[str, object]:
    """DuckDB settings that load only what is in the project's directory and never fetch anything."""
    return {
        "extension_directory": str(extension_dir()),
        "autoinstall_known_extensions": False,
        "autoload_known_extensions": False,
    }


def _wheel_binary(package: str) -> Path:
    spec = importlib.util.find_spec(package)
    if spec is None or spec.origin is None:
        raise ConfigError(
            f"cluster mode needs the package {package.replace('_', '-')} (pip install '.[cluster]')"
        )
    found = sorted(Path(spec.origin).parent.glob(f"extensions/v{duckdb.__version__}/*.duckdb_extension"))
    if len(found) != 1:
        raise ConfigError(
            f"{package} holds no extension binary for DuckDB {duckdb.__version__} "
            "(cluster mode needs duckdb==1.5.5 and the 1.5.5 extension wheels)"
        )
    return found[0]


def installed() -> bool:
    d = extension_dir() / f"v{duckdb.__version__}"
    return all(any(d.glob(f"*/{name}.duckdb_extension")) for name in EXTENSIONS.values())


def install() -> Path:
    """Copy the three signed binaries into the extension directory (idempotent; a file lock keeps two
    processes on one host from copying at once). Returns the directory."""
    target = extension_dir()
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".install.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if installed():
            return target
        con = duckdb.connect(
            config={"extension_directory": str(target), "autoinstall_known_extensions": False}
        )
        try:
            for package in EXTENSIONS:
                path = str(_wheel_binary(package)).replace("'", "''")
                con.execute(f"INSTALL '{path}'")
        finally:
            con.close()
    return target


if __name__ == "__main__":
    print(f"DuckDB {duckdb.__version__} extensions {', '.join(EXTENSIONS.values())} in {install()}")

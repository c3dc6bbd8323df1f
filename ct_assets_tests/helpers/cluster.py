"""The real services of the cluster-mode tests: Debian's PostgreSQL (initdb and pg_ctl as the postgres
user when the tests run as root, since initdb refuses root) in a temporary folder on a loopback port,
and moto's S3 server on 127.0.0.1. Both are started once per test session, each test getting fresh
databases and a fresh bucket; both are stopped (by pid, through pg_ctl) at the end."""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ct_assets_tests.helpers.processes import HOST, free_port, stop_family, wait_for_port

PG_USER, PG_PASSWORD = "ct", "ct-test-only"
AWS_KEY, AWS_SECRET = "testing", "testing"


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL server binaries (Debian's layout), or None."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    return found[-1].parent if found else None


def cluster_extra_missing() -> str:
    """Why the cluster tests cannot run here ("" when they can): the `cluster` extra or PostgreSQL."""
    for module in ("psycopg2", "boto3", "moto", "duckdb_extension_ducklake"):
        try:
            __import__(module)
        except ImportError:
            return f"the cluster extra is not installed ({module}); run `make test-cluster`"
    return ""


@dataclass
class Postgres:
    root: Path
    port: int

    def start(self) -> None:
        from ct_assets.tools.loopback_cluster import start_postgres_server

        start_postgres_server(self.root, self.port, PG_PASSWORD, durable=False)

    def stop(self) -> None:
        from ct_assets.tools.loopback_cluster import stop_postgres_server

        with contextlib.suppress(subprocess.CalledProcessError):
            stop_postgres_server(self.root / "data", mode="immediate")

    def env(self) -> dict[str, str]:
        return {"PGHOST": HOST, "PGPORT": str(self.port), "PGUSER": PG_USER, "PGPASSWORD": PG_PASSWORD}

    def createdb(self, name: str) -> None:
        import psycopg2

        con = psycopg2.connect(dbname="postgres", **_libpq(self.env()))
        con.autocommit = True
        with con.cursor() as cur:
            cur.execute(f'CREATE DATABASE "{name}"')
        con.close()


def _libpq(env: dict[str, str]) -> dict[str, Any]:
    return {
        "host": env["PGHOST"],
        "port": env["PGPORT"],
        "user": env["PGUSER"],
        "password": env["PGPASSWORD"],
    }


@dataclass
class Services:
    """PostgreSQL and moto, and the environment that points ct_assets at them."""

    postgres: Postgres
    s3_port: int

    def env(self) -> dict[str, str]:
        return {
            **self.postgres.env(),
            "AWS_ACCESS_KEY_ID": AWS_KEY,
            "AWS_SECRET_ACCESS_KEY": AWS_SECRET,
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": f"http://{HOST}:{self.s3_port}",
        }

    def fresh(self) -> dict[str, str]:
        """New databases and a new bucket for one test: the [cluster] table that uses them."""
        import boto3

        tag = uuid.uuid4().hex[:10]
        dbs = {k: f"t{tag}_{k.split('_')[0]}" for k in ("catalog_db", "state_db", "dagster_db")}
        for name in dbs.values():
            self.postgres.createdb(name)
        bucket = f"ct-{tag}"
        boto3.client("s3", endpoint_url=self.env()["AWS_ENDPOINT_URL"]).create_bucket(Bucket=bucket)
        return {"objects": f"s3://{bucket}/ct", "data_path": f"s3://{bucket}/lake/", **dbs}


@contextlib.contextmanager
def running_services() -> Iterator[Services]:
    """Start PostgreSQL and moto on free loopback ports; stop both on exit."""
    if pg_bin() is None:
        raise RuntimeError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)"
        )
    root = Path(tempfile.mkdtemp(prefix="ct_cluster_"))
    root.chmod(0o755)
    postgres = Postgres(root / "pg", free_port())
    (root / "pg").mkdir()
    moto = None
    try:
        t0 = time.monotonic()
        postgres.start()
        port = free_port()
        moto = subprocess.Popen(
            [str(Path(sys.executable).parent / "moto_server"), "-H", HOST, "-p", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=open(root / "moto.log", "w"),  # noqa: SIM115 (closed with the process)
            start_new_session=True,
        )
        wait_for_port(moto, port, root / "moto.log", timeout=30)
        services = Services(postgres, port)
        os.environ.update(services.env())
        print(f"cluster services up in {time.monotonic() - t0:.2f} s", file=sys.stderr)
        yield services
    finally:
        if moto is not None:
            stop_family(moto)
        postgres.stop()
        shutil.rmtree(root, ignore_errors=True)


INGEST_SCRIPT = """
import json, os, sys, time
from ct_assets.commands.runs import run_job
import ct_assets.definitions, ct_assets.core.ingest.quality, great_expectations  # loaded before the start
barrier = sys.argv[1]
open(f"{barrier}.ready.{os.getpid()}", "w").close()
while not os.path.exists(barrier):
    time.sleep(0.005)
res = run_job("ingest_job", tags={"ct_assets/trigger": "test"})
print(json.dumps({"run_id": res.run_id, "success": res.success}))
"""


@dataclass
class ClusterProject:
    """One working folder of a cluster-mode process: its own config file (the shared [cluster] table),
    its own DAGSTER_HOME and scratch folders; nothing on disk is shared with another project."""

    folder: Path
    cluster: dict[str, str]
    env: dict[str, str]

    @classmethod
    def make(
        cls, folder: Path, cluster: dict[str, str], services: Services, **tables: dict[str, Any]
    ) -> ClusterProject:
        from ct_assets_tests.helpers.config import CHECKOUT, small, write_config

        folder.mkdir(parents=True, exist_ok=True)
        config = write_config(folder / "config.toml", {**small(**tables), "cluster": cluster})
        env = {k: v for k, v in os.environ.items() if not k.startswith(("CT_ASSETS", "DAGSTER"))}
        env.update(services.env())
        env.update(
            CT_ASSETS_CONFIG=str(config),
            DAGSTER_HOME=str(folder / "dagster_home"),
            PYTHONPATH=str(CHECKOUT),
            TMPDIR=str(folder),
        )
        return cls(folder, cluster, env)

    def cli(self, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).parent / "ct-assets"), *args],
            cwd=self.folder,
            env={**self.env, **env},
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def start_ingest(self, barrier: Path, **env: str) -> subprocess.Popen[str]:
        """An ingest_job run (in-process, on the PostgreSQL instance) that starts when `barrier` exists,
        its modules loaded before (it leaves `<barrier>.ready.<pid>` then)."""
        return subprocess.Popen(
            [sys.executable, "-c", INGEST_SCRIPT, str(barrier)],
            cwd=self.folder,
            env={**self.env, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    @property
    def bucket(self) -> str:
        return self.cluster["objects"][len("s3://") :].split("/", 1)[0]

    def keys(self, area: str) -> list[str]:
        """Names of the objects in <objects>/<area>/."""
        from ct_assets.store.objects import ObjectStore

        return sorted(o.name for o in ObjectStore(self.cluster["objects"]).list(area))

    def land(self, files: list[Path]) -> None:
        """Upload files to <objects>/landing/ as a producer on another host would."""
        from ct_assets.store.objects import ObjectStore

        store = ObjectStore(self.cluster["objects"])
        for f in files:
            store.upload(f, store.key("landing", f.name))

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        """Rows of a query on the DuckLake warehouse (a fresh connection in this process)."""
        from ct_assets.config.cluster import parse_cluster
        from ct_assets.store import lake

        settings = parse_cluster(self.cluster, "the test's [cluster] table")
        assert settings is not None
        con = lake.connect(settings)
        try:
            return con.execute(sql, params or []).fetchall()
        finally:
            con.close()

    def state(self, sql: str) -> list[tuple]:
        """Rows of a query on the state database (claims, id counters)."""
        import psycopg2

        con = psycopg2.connect(dbname=self.cluster["state_db"], **_libpq(self.env))
        try:
            with con.cursor() as cur:
                cur.execute(sql)
                return cur.fetchall()
        finally:
            con.close()


def wait_ready(barrier: Path, procs: list[subprocess.Popen[str]], timeout: float = 120) -> None:
    """Wait until every process started by start_ingest has loaded its modules and waits on `barrier`."""
    deadline = time.monotonic() + timeout
    while not all(Path(f"{barrier}.ready.{p.pid}").exists() for p in procs):
        for p in procs:
            if p.poll() is not None:
                raise AssertionError(
                    f"ingest process exited early ({p.returncode}): {p.communicate()[1][-3000:]}"
                )
        if time.monotonic() > deadline:
            raise AssertionError("ingest processes not ready in time")
        time.sleep(0.05)

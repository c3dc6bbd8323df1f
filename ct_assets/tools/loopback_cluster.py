"""The cluster's services on this machine, each its own process on 127.0.0.1: PostgreSQL (Debian's
binaries, run as the `postgres` user when we are root, because initdb refuses root), an S3-compatible
object store (moto's server), a Dask scheduler and its workers, each worker in its own folder.

For `ct-assets demo --cluster` and the cluster tests. On real hosts these are managed services
(docs/scale_out.md); nothing here is needed there. Every process is started in its own session and
stopped by its process group, never by name.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HOST = "127.0.0.1"
PG_USER, PG_PASSWORD = "ct", "ct"  # a throw-away local cluster: these reach the steps as env variables
S3_KEY, S3_SECRET, S3_REGION = "testing", "testing", "us-east-1"
DATABASES = ("ct", "dagster", "ducklake_catalog")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def postgres_bin() -> Path:
    """The folder of Debian's PostgreSQL server binaries (the newest installed major version)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if not found:
        raise RuntimeError(
            "PostgreSQL server binaries not found under /usr/lib/postgresql (apt-get install postgresql)"
        )
    return found[-1].parent


@dataclass
class Service:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path


@dataclass
class LoopbackCluster:
    """The running services and the environment variables that point a ct_assets process at them."""

    root: Path
    env: dict[str, str] = field(default_factory=dict)
    services: list[Service] = field(default_factory=list)
    pg_data: Path | None = None

    def spawn(self, name: str, cmd: list[str], *, cwd: Path | None = None) -> Service:
        log = self.root / "logs" / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                cmd,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **self.env},
                start_new_session=True,
            )
        service = Service(name, proc, log)
        self.services.append(service)
        return service

    def stop(self) -> None:
        """Stop every service, newest first: SIGTERM to its process group, SIGKILL after 10 s."""
        for service in reversed(self.services):
            _stop_group(service.proc)
        self.services.clear()
        if self.pg_data is not None:
            _as_postgres(
                [str(postgres_bin() / "pg_ctl"), "-D", str(self.pg_data), "-m", "fast", "-w", "stop"]
            )
            self.pg_data = None


def _stop_group(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM to the process group, SIGKILL to what is left of it after `grace` seconds. The whole group
    is waited for, not only its leader: `dagster dev` exits before its run workers have."""
    if not _group_alive(proc):
        return
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, sig)
        deadline = time.monotonic() + grace
        while _group_alive(proc) and time.monotonic() < deadline:
            time.sleep(0.1)
        if not _group_alive(proc):
            return


def _group_alive(proc: subprocess.Popen[bytes]) -> bool:
    """Whether the leader or any other member of the process group started with `proc` still runs."""
    if proc.poll() is None:
        return True
    try:
        os.killpg(proc.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _as_postgres(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    """Run a PostgreSQL server command, as the `postgres` user when we are root."""
    if os.geteuid() == 0:
        cmd = ["runuser", "-u", "postgres", "--", *cmd]
    return subprocess.run(cmd, check=True, capture_output=True, text=True)


def start_postgres_server(root: Path, port: int, password: str, *, durable: bool = True) -> Path:
    """initdb a cluster under `root` (role PG_USER with `password`) listening on 127.0.0.1:`port` and its
    own socket folder, and start it; returns its data folder. `durable=False` turns fsync off (tests)."""
    data, sock = root / "data", root / "sock"
    sock.mkdir(parents=True, exist_ok=True)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    pwfile.chmod(0o600)
    if os.geteuid() == 0:
        owner = pwd.getpwnam("postgres")
        for p in (root, sock, pwfile):
            os.chown(p, owner.pw_uid, owner.pw_gid)
    binary = postgres_bin()
    _as_postgres(
        [str(binary / "initdb"), "-D", str(data), "-U", PG_USER, f"--pwfile={pwfile}", "--auth-local=trust",
         "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8"]
    )  # fmt: skip
    with (data / "postgresql.conf").open("a") as conf:
        conf.write(
            f"listen_addresses = '{HOST}'\nport = {port}\nunix_socket_directories = '{sock}'\n"
            "max_connections = 200\n" + ("" if durable else "fsync = off\nsynchronous_commit = off\n")
        )
    _as_postgres(
        [str(binary / "pg_ctl"), "-D", str(data), "-l", str(root / "postgres.log"), "-w", "-t", "30", "start"]
    )
    return data


def stop_postgres_server(data: Path, mode: str = "fast") -> None:
    _as_postgres([str(postgres_bin() / "pg_ctl"), "-D", str(data), "-m", mode, "-w", "stop"])


def start_postgres(cluster: LoopbackCluster) -> None:
    """initdb + start on a free loopback port + the project's databases (about 0.8 s)."""
    root = cluster.root / "postgres"
    port = free_port()
    cluster.pg_data = start_postgres_server(root, port, PG_PASSWORD)
    for db in DATABASES:
        _as_postgres(
            [str(postgres_bin() / "createdb"), "-h", str(root / "sock"), "-p", str(port), "-U", PG_USER, db]
        )
    cluster.env.update(PGHOST=HOST, PGPORT=str(port), PGUSER=PG_USER, PGPASSWORD=PG_PASSWORD, PGDATABASE="ct")


def start_object_store(cluster: LoopbackCluster, bucket: str) -> None:
    """moto's S3 server on a free loopback port (objects live in its memory), and `bucket`."""
    port = free_port()
    endpoint = f"http://{HOST}:{port}"
    moto = shutil.which("moto_server", path=str(Path(sys.executable).parent)) or "moto_server"
    service = cluster.spawn("object-store", [moto, "-H", HOST, "-p", str(port)])
    _wait(lambda: _answers(endpoint), service, 30)
    cluster.env.update(
        AWS_ACCESS_KEY_ID=S3_KEY,
        AWS_SECRET_ACCESS_KEY=S3_SECRET,
        AWS_DEFAULT_REGION=S3_REGION,
        AWS_ENDPOINT_URL=endpoint,
    )
    request = urllib.request.Request(f"{endpoint}/{bucket}", method="PUT")  # moto takes unsigned requests
    urllib.request.urlopen(request, timeout=10).close()


def start_dask(cluster: LoopbackCluster, workers: int) -> None:
    """A Dask scheduler and `workers` workers of one thread, each in its own folder."""
    port = free_port()
    address = f"tcp://{HOST}:{port}"
    dask = shutil.which("dask", path=str(Path(sys.executable).parent)) or "dask"
    scheduler = cluster.spawn(
        "dask-scheduler",
        [dask, "scheduler", "--host", HOST, "--port", str(port), "--dashboard-address", f"{HOST}:0"],
    )
    _wait(_log_says(scheduler, "Scheduler at"), scheduler, 60)
    cluster.env["CT_DASK_SCHEDULER"] = address
    started = []
    for i in range(1, workers + 1):
        folder = cluster.root / "workers" / f"w{i}"
        (folder / "dask-scratch").mkdir(parents=True, exist_ok=True)
        started.append(
            cluster.spawn(
                f"dask-worker-{i}",
                [dask, "worker", address, "--name", f"w{i}", "--host", HOST, "--nthreads", "1", "--nworkers", "1",
                 "--local-directory", str(folder / "dask-scratch"), "--dashboard-address", f"{HOST}:0"],
                cwd=folder,
            )
        )  # fmt: skip
    for worker in started:
        _wait(_log_says(worker, "Registered to"), worker, 60)


def _log_says(service: Service, text: str) -> Callable[[], bool]:
    return lambda: text in service.log.read_text(errors="replace")


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=2).close()
        return True
    except OSError:
        return False


def _wait(ready: Callable[[], bool], service: Service, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if service.proc.poll() is not None:
            raise RuntimeError(
                f"{service.name} exited with code {service.proc.returncode}; see {service.log}"
            )
        if time.monotonic() > deadline:
            raise RuntimeError(f"{service.name} not ready after {timeout:.0f} s; see {service.log}")
        time.sleep(0.05)


@contextlib.contextmanager
def loopback_cluster(root: Path, *, bucket: str = "ct-lake", workers: int = 2) -> Iterator[LoopbackCluster]:
    """PostgreSQL, the object store and a Dask scheduler with `workers` workers under `root`; all stopped
    on exit, however the block ends."""
    cluster = LoopbackCluster(root)
    try:
        start_postgres(cluster)
        start_object_store(cluster, bucket)
        if workers:
            start_dask(cluster, workers)
        yield cluster
    finally:
        cluster.stop()

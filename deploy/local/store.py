"""The embedded store: FerretDB v1 on a private PostgreSQL cluster of its own.

FerretDB is built from the Go module proxy (see ``ferretdb/go.mod``); PostgreSQL's server programs
are the machine's. Standard library only.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from deploy.local.processes import (
    CACHE_DIR,
    HERE,
    RUN_DIR,
    InfraError,
    log,
    pid_alive,
    port_open,
    run,
    spawn,
    stop,
)

FERRETDB_VERSION = "v1.24.2"  # keep in step with ferretdb/go.mod
#: FerretDB's pool of PostgreSQL connections, and how many operations one MongoDB client of the
#: embedded store (a service, a test, a tool) keeps in flight: a dozen clients together stay below
#: half the pool, so an operation waiting for a second connection always finds one.
POSTGRES_CONNECTIONS = 400
CLIENT_OPERATIONS = 16


def _postgres_bin() -> Path:
    """The directory of PostgreSQL's server programs: ``CARECRM_POSTGRES_BIN``, else the newest of
    Debian's ``/usr/lib/postgresql/<version>/bin``, else wherever ``initdb`` is on the PATH."""
    if os.environ.get("CARECRM_POSTGRES_BIN"):
        return Path(os.environ["CARECRM_POSTGRES_BIN"])
    debian = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name)
                    if p.parent.parent.name.isdigit() else 0)
    if debian:
        return debian[-1].parent
    initdb = shutil.which("initdb")
    if initdb is None:
        raise InfraError("PostgreSQL's server (initdb, pg_ctl, postgres) is needed for the embedded store: "
                         "install it (Debian: apt-get install postgresql) or set CARECRM_POSTGRES_BIN")
    return Path(initdb).resolve().parent


@dataclass(frozen=True)
class Postgres:
    """A private PostgreSQL cluster under the run directory, FerretDB's backend.

    PostgreSQL refuses to run as root: as root, the cluster belongs to the ``postgres`` system user
    and its programs run as that user. ``synchronous_commit=off`` (a crash loses at most the last
    fraction of a second of commits, never consistency) suits a local default; ``fsync`` stays on.
    """

    host: str = "127.0.0.1"
    port: int = int(os.environ.get("CARECRM_POSTGRES_PORT", "27432"))
    run_dir: Path = RUN_DIR
    database: str = "ferretdb"

    @property
    def home(self) -> Path:
        return self.run_dir / "postgres"

    @property
    def data(self) -> Path:
        return self.home / "data"

    @property
    def pid_file(self) -> Path:
        return self.home / "postgres.pid"

    @property
    def url(self) -> str:
        return f"postgres://postgres@{self.host}:{self.port}/{self.database}"

    def _as_owner(self, cmd: list[str]) -> list[str]:
        if os.geteuid() != 0:
            return cmd
        if shutil.which("runuser") is None:
            raise InfraError("running as root needs runuser to start PostgreSQL as the postgres user")
        return ["runuser", "-u", "postgres", "--", *cmd]

    def _give_to_owner(self) -> None:
        if os.geteuid() != 0:
            return
        import pwd

        try:
            owner = pwd.getpwnam("postgres")
        except KeyError:
            raise InfraError("running as root needs a postgres system user to own the cluster") from None
        for path in (self.home, self.data):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        probe = subprocess.run(["runuser", "-u", "postgres", "--", "test", "-w", str(self.data)])
        if probe.returncode != 0:
            raise InfraError(f"the postgres user cannot reach {self.data}; set CARECRM_RUN_DIR to a directory "
                             "it can traverse")

    def psql(self, sql: str, database: str | None = None) -> str:
        """Run ``sql`` with psql as the superuser; return what it printed (unaligned, tuples only)."""
        proc = subprocess.run(
            [str(_postgres_bin() / "psql"), "-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", self.host,
             "-p", str(self.port), "-U", "postgres", "-d", database or self.database],
            input=sql, capture_output=True, text=True)
        if proc.returncode != 0:
            raise InfraError(f"psql failed: {proc.stderr.strip()[-2000:]}")
        return proc.stdout

    def up(self, timeout: float = 60.0) -> str:
        if pid_alive(self.pid_file) and port_open(self.host, self.port):
            return self.url
        if port_open(self.host, self.port):
            raise InfraError(f"port {self.port} is taken by another process; set CARECRM_POSTGRES_PORT")
        bindir = _postgres_bin()
        self.home.mkdir(parents=True, exist_ok=True)
        fresh = not (self.data / "PG_VERSION").exists()
        if fresh:
            shutil.rmtree(self.data, ignore_errors=True)
            self.data.mkdir(mode=0o700)
            self._give_to_owner()
            run(self._as_owner([str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
                                "-E", "UTF8", "--locale=C.UTF-8", "--no-instructions"]))
        else:
            self._give_to_owner()
        log_file = self.data / "server.log"  # inside the cluster's directory: its owner can write it
        options = " ".join([
            f"-p {self.port}", f"-c listen_addresses={self.host}", "-c unix_socket_directories=''",
            "-c synchronous_commit=off", "-c shared_buffers=256MB", f"-c max_connections={POSTGRES_CONNECTIONS + 20}",
            "-c wal_level=minimal", "-c max_wal_senders=0", "-c max_wal_size=1GB",
            # FerretDB names the field as a query parameter (`_jsonb -> $1 @> $2`): only a plan made
            # for the actual values can match the field's expression index.
            "-c plan_cache_mode=force_custom_plan",
        ])
        run(self._as_owner([str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(log_file), "-w",
                            "-t", str(int(timeout)), "-o", options, "start"]))
        pid = (self.data / "postmaster.pid").read_text().split()[0]
        self.pid_file.write_text(pid)
        log(f"postgresql ready on {self.host}:{self.port} (pid {pid})")
        if fresh:
            self.psql(f"CREATE DATABASE {self.database}", database="postgres")
        self.psql((HERE / "postgres" / "mirror_gin.sql").read_text())
        return self.url

    def down(self) -> None:
        if pid_alive(self.pid_file) is None:
            self.pid_file.unlink(missing_ok=True)
            return
        log("stopping postgresql")
        try:
            run(self._as_owner([str(_postgres_bin() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]))
        except InfraError:
            stop(self.pid_file, "postgresql")
        self.pid_file.unlink(missing_ok=True)


@dataclass(frozen=True)
class FerretDB:
    """FerretDB v1 on its own PostgreSQL cluster (see ``postgres/mirror_gin.sql`` for its indexes)."""

    host: str = "127.0.0.1"
    port: int = int(os.environ.get("CARECRM_FERRETDB_PORT", "27017"))
    run_dir: Path = RUN_DIR
    postgres_port: int = int(os.environ.get("CARECRM_POSTGRES_PORT", "27432"))

    @property
    def postgres(self) -> Postgres:
        return Postgres(port=self.postgres_port, run_dir=self.run_dir)

    @property
    def binary(self) -> Path:
        # Named after the launcher's source too, so that a changed launcher is rebuilt.
        digest = hashlib.sha256(b"".join((HERE / "ferretdb" / name).read_bytes()
                                         for name in ("main.go", "go.mod", "go.sum"))).hexdigest()[:10]
        return CACHE_DIR / "bin" / f"ferretdb-{FERRETDB_VERSION}-{digest}"

    @property
    def home(self) -> Path:
        return self.run_dir / "ferretdb"

    @property
    def pid_file(self) -> Path:
        return self.home / "ferretdb.pid"

    @property
    def url(self) -> str:
        # FerretDB v1 can take a second PostgreSQL connection while it holds one: once every
        # connection of its pool is held by such an operation it waits forever. Each client keeps
        # its operations in flight well below the pool's share (see POSTGRES_CONNECTIONS).
        return f"mongodb://{self.host}:{self.port}/?maxPoolSize={CLIENT_OPERATIONS}"

    def build(self) -> None:
        if self.binary.exists():
            return
        if shutil.which("go") is None:
            raise InfraError("Go 1.24+ is needed to build FerretDB")
        self.binary.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.binary.with_name(self.binary.name + ".tmp")
        env = {**os.environ, "CGO_ENABLED": "0"}
        log(f"building FerretDB {FERRETDB_VERSION} from the Go module proxy (a minute or two, once)")
        run(["go", "build", "-mod=mod", "-o", str(tmp), "."], cwd=HERE / "ferretdb", env=env)
        tmp.rename(self.binary)

    def up(self, timeout: float = 60.0) -> str:
        if pid_alive(self.pid_file) and port_open(self.host, self.port):
            self.postgres.up()
            log(f"ferretdb already running on {self.url}")
            return self.url
        if port_open(self.host, self.port):
            raise InfraError(f"port {self.port} is taken by another process; set MONGODB_URL to use it")
        self.build()
        backend = self.postgres.up()
        self.home.mkdir(parents=True, exist_ok=True)
        cmd = [str(self.binary), f"-postgresql-url={backend}?pool_max_conns={POSTGRES_CONNECTIONS}",
               f"-listen-addr={self.host}:{self.port}",
               "-log-level=error"]
        pid = spawn(cmd, log_file=self.home / "ferretdb.log", pid_file=self.pid_file, cwd=self.home)
        log(f"ferretdb starting (pid {pid})")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pid_alive(self.pid_file) is None:
                raise InfraError(f"ferretdb exited during start; see {self.home / 'ferretdb.log'}")
            if port_open(self.host, self.port):
                log(f"ferretdb ready on {self.url}")
                return self.url
            time.sleep(0.1)
        raise InfraError(f"ferretdb not ready after {timeout:.0f}s")

    def down(self) -> None:
        stop(self.pid_file, "ferretdb")
        self.postgres.down()

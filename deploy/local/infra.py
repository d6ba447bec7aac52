"""Embedded infrastructure for local runs and tests: Apache Kafka (KRaft) and FerretDB.

Standard library only, so it runs before the virtual environment exists.

    python3 deploy/local/infra.py up | down | status | wipe
    python3 deploy/local/infra.py up --kafka-sasl-port 9094   # also a SASL_SSL listener

Kafka's jars come from Maven Central through the machine's Maven (see ``kafka/pom.xml``);
FerretDB is built from the Go module proxy (see ``ferretdb/go.mod``). Both are cached under
``CARECRM_CACHE_DIR`` (default ``.cache``); data, logs and pid files live in ``CARECRM_RUN_DIR``
(default ``.run``). When ``KAFKA_BOOTSTRAP_SERVERS`` or ``MONGODB_URL`` is set, that server is
used as it is and nothing is started for it.

With ``CARECRM_KAFKA_SASL_PORT`` (or ``--kafka-sasl-port``) Kafka also listens with SASL_SSL and
SCRAM-SHA-512 on that port, with a certificate from a local CA made by ``openssl``, and ``up`` prints
the settings a service needs to use it. The PLAINTEXT listener stays for the controller, the
broker's own traffic and local tools.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import ipaddress
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
FERRETDB_VERSION = "v1.24.2"  # keep in step with ferretdb/go.mod
#: FerretDB's pool of PostgreSQL connections, and how many operations one MongoDB client of the
#: embedded store (a service, a test, a tool) keeps in flight: a dozen clients together stay below
#: half the pool, so an operation waiting for a second connection always finds one.
POSTGRES_CONNECTIONS = 400
CLIENT_OPERATIONS = 16
SASL_MECHANISM = "SCRAM-SHA-512"
SASL_LISTENER = "SASL_SSL"


def _env_path(name: str, default: Path) -> Path:
    return Path(os.environ.get(name) or default).resolve()


def _env_port(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


CACHE_DIR = _env_path("CARECRM_CACHE_DIR", ROOT / ".cache")
RUN_DIR = _env_path("CARECRM_RUN_DIR", ROOT / ".run")


class InfraError(RuntimeError):
    pass


def _log(msg: str) -> None:
    print(f"[infra] {msg}", file=sys.stderr, flush=True)


def _port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
         secret: str | None = None) -> None:
    def shown(text: str) -> str:  # a password on the command line stays out of logs and errors
        return text.replace(secret, "***") if secret else text

    _log("$ " + shown(" ".join(cmd)))
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InfraError(shown(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"))


def _spawn(cmd: list[str], *, log_file: Path, pid_file: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the shell that started it; stopped by pid
        )
    pid_file.write_text(str(proc.pid))
    return proc.pid


def _stop(pid_file: Path, name: str, timeout: float = 30.0) -> None:
    pid = _pid_alive(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return
    _log(f"stopping {name} (pid {pid})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if _pid_alive(pid_file) is None:
            break
        time.sleep(0.2)
    else:
        _log(f"{name} did not stop in {timeout:.0f}s; killing it")
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)


@dataclass(frozen=True)
class Kafka:
    host: str = "127.0.0.1"
    port: int = int(os.environ.get("CARECRM_KAFKA_PORT", "9092"))
    controller_port: int = int(os.environ.get("CARECRM_KAFKA_CONTROLLER_PORT", "9093"))
    #: Where the data, logs and pid file live; a second instance (fault tests) takes another one.
    run_dir: Path = RUN_DIR
    #: A SASL_SSL listener with SCRAM-SHA-512 on this port besides PLAINTEXT; None: PLAINTEXT only.
    sasl_port: int | None = _env_port("CARECRM_KAFKA_SASL_PORT")
    #: The SCRAM user created when the storage is formatted; its password is made then too.
    sasl_user: str = "carecrm"

    @property
    def version(self) -> str:
        match = re.search(r"<kafka.version>([^<]+)</kafka.version>", (HERE / "kafka" / "pom.xml").read_text())
        assert match, "kafka.version missing from pom.xml"
        return match.group(1)

    @property
    def libs(self) -> Path:
        return CACHE_DIR / "kafka" / f"libs-{self.version}"

    @property
    def home(self) -> Path:
        return self.run_dir / "kafka"

    @property
    def pid_file(self) -> Path:
        return self.home / "kafka.pid"

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def sasl_dir(self) -> Path:
        """The local CA, the broker's key and certificate, and the SCRAM password."""
        return self.home / "sasl"

    @property
    def ca_file(self) -> Path:
        return self.sasl_dir / "ca.pem"

    @property
    def keystore_file(self) -> Path:
        """The broker's private key, certificate and CA in one PEM file (``ssl.keystore.type=PEM``)."""
        return self.sasl_dir / "broker.pem"

    @property
    def password_file(self) -> Path:
        return self.sasl_dir / "password"

    def client_settings(self) -> dict[str, str]:
        """The settings a service needs to reach the SASL_SSL listener (after ``up``)."""
        if self.sasl_port is None:
            raise InfraError("this Kafka has no SASL_SSL listener (set sasl_port / CARECRM_KAFKA_SASL_PORT)")
        if not self.password_file.exists():
            raise InfraError(f"no SCRAM password in {self.password_file}; start Kafka with its SASL port first")
        return {
            "KAFKA_BOOTSTRAP_SERVERS": f"{self.host}:{self.sasl_port}",
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": SASL_MECHANISM,
            "KAFKA_SASL_USERNAME": self.sasl_user,
            "KAFKA_SASL_PASSWORD": self.password_file.read_text().strip(),
            "KAFKA_SSL_CAFILE": str(self.ca_file),
        }

    def scram_credential(self, password: str) -> str:
        """The ``kafka-storage format --add-scram`` value that creates the SCRAM user."""
        if not re.fullmatch(r"[\w.-]+", self.sasl_user) or not re.fullmatch(r"[\w.-]+", password):
            # The value is parsed as key=value pairs between brackets; keep it free of separators.
            raise InfraError("SCRAM user and password must be letters, digits, '_', '.' or '-'")
        return f"{SASL_MECHANISM}=[name={self.sasl_user},password={password}]"

    def format_args(self, config: Path, cluster_id: str, password: str | None = None) -> list[str]:
        # "=" form: a base64url id may start with "-", which would read as an option.
        args = ["format", "--standalone", "--ignore-formatted", f"--cluster-id={cluster_id}", "--config", str(config)]
        if password is not None:
            args.append(f"--add-scram={self.scram_credential(password)}")
        return args

    def sasl_password(self) -> str:
        """The SCRAM password, made on first use and kept (mode 600) next to the certificates."""
        if self.password_file.exists():
            return self.password_file.read_text().strip()
        self.sasl_dir.mkdir(parents=True, exist_ok=True)
        password = secrets.token_hex(24)
        self.password_file.touch(mode=0o600)
        self.password_file.write_text(password + "\n")
        return password

    def make_certificates(self) -> None:
        """A self-signed local CA and a broker certificate for localhost, 127.0.0.1 and ``host``."""
        if self.ca_file.exists() and self.keystore_file.exists():
            return
        openssl = shutil.which("openssl")
        if openssl is None:
            raise InfraError("openssl is needed to make the certificates of the SASL_SSL listener")
        work = self.sasl_dir / "work"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        # Own configuration rather than the system's openssl.cnf, whose defaults differ between distributions.
        (work / "openssl.cnf").write_text(
            "[req]\ndistinguished_name = dn\nprompt = no\n[dn]\nCN = carecrm\n"
            "[ca]\nbasicConstraints = critical, CA:TRUE\nkeyUsage = critical, keyCertSign, cRLSign\n"
            "subjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid:always\n"
            "[broker]\nbasicConstraints = critical, CA:FALSE\nkeyUsage = critical, digitalSignature, keyEncipherment\n"
            "extendedKeyUsage = serverAuth\nsubjectKeyIdentifier = hash\nauthorityKeyIdentifier = keyid, issuer\n"
            f"subjectAltName = {', '.join(self.subject_alt_names())}\n")
        cnf = str(work / "openssl.cnf")
        _run([openssl, "req", "-x509", "-config", cnf, "-extensions", "ca", "-newkey", "rsa:2048", "-nodes",
              "-sha256", "-days", "3650", "-subj", "/CN=carecrm local development CA",
              "-keyout", str(work / "ca.key"), "-out", str(work / "ca.pem")])
        _run([openssl, "req", "-new", "-config", cnf, "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
              "-keyout", str(work / "broker.key"), "-out", str(work / "broker.csr")])
        _run([openssl, "x509", "-req", "-in", str(work / "broker.csr"), "-CA", str(work / "ca.pem"),
              "-CAkey", str(work / "ca.key"), "-set_serial", str(secrets.randbits(63)), "-sha256", "-days", "825",
              "-extfile", cnf, "-extensions", "broker", "-out", str(work / "broker.crt")])
        keystore = work / "broker.pem"
        keystore.touch(mode=0o600)
        keystore.write_text("".join((work / name).read_text() for name in ("broker.key", "broker.crt", "ca.pem")))
        keystore.replace(self.keystore_file)
        (work / "ca.pem").replace(self.ca_file)
        shutil.rmtree(work)  # the CA key goes: nothing else is ever signed with it

    def subject_alt_names(self) -> list[str]:
        names = ["DNS:localhost", "IP:127.0.0.1"]
        try:
            extra = f"IP:{ipaddress.ip_address(self.host)}"
        except ValueError:
            extra = f"DNS:{self.host}"
        return names if extra in names else [*names, extra]

    def fetch(self) -> None:
        if (self.libs / f"kafka_2.13-{self.version}.jar").exists():
            return
        if shutil.which("mvn") is None:
            raise InfraError("Maven (mvn) is needed to fetch Apache Kafka's jars")
        tmp = self.libs.with_name(self.libs.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        _log(f"fetching Apache Kafka {self.version} and its runtime dependencies with Maven")
        _run(["mvn", "-B", "-q", "-f", str(HERE / "kafka" / "pom.xml"), "dependency:copy-dependencies",
              "-DincludeScope=runtime", f"-DoutputDirectory={tmp}"])
        tmp.rename(self.libs)

    def _java(self, main: str, *args: str, heap: str = "256m") -> list[str]:
        java = shutil.which("java")
        if java is None:
            raise InfraError("Java 17+ is needed to run Apache Kafka")
        return [java, f"-Xmx{heap}", "-XX:+UseG1GC",
                f"-Dlog4j2.configurationFile={HERE / 'kafka' / 'log4j2.properties'}",
                f"-Dkafka.logs.dir={self.home / 'logs'}",
                "-cp", str(self.libs / "*"), main, *args]

    def properties(self) -> dict[str, str]:
        """The broker's ``server.properties``."""
        listeners = [f"PLAINTEXT://{self.host}:{self.port}"]
        protocols = ["CONTROLLER:PLAINTEXT", "PLAINTEXT:PLAINTEXT"]
        if self.sasl_port is not None:
            listeners.append(f"{SASL_LISTENER}://{self.host}:{self.sasl_port}")
            protocols.append(f"{SASL_LISTENER}:SASL_SSL")
        listeners.append(f"CONTROLLER://{self.host}:{self.controller_port}")
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{self.host}:{self.controller_port}",
            "listeners": ",".join(listeners),
            "advertised.listeners": ",".join(listeners),
            "controller.listener.names": "CONTROLLER",
            # The controller and the broker's own traffic stay on loopback PLAINTEXT; clients choose.
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": ",".join(protocols),
            "log.dirs": str(self.home / "data"),
            "num.partitions": "6",
            "offsets.topic.replication.factor": "1",
            "offsets.topic.num.partitions": "6",
            "transaction.state.log.replication.factor": "1",
            "transaction.state.log.min.isr": "1",
            "share.coordinator.state.topic.replication.factor": "1",
            "share.coordinator.state.topic.min.isr": "1",
            "group.initial.rebalance.delay.ms": "0",
            # Topics are created by the services with their contract configuration.
            "auto.create.topics.enable": "false",
            "log.segment.bytes": str(64 * 1024 * 1024),
        }
        if self.sasl_port is not None:
            prefix = f"listener.name.{SASL_LISTENER.lower()}."
            props.update({
                "sasl.enabled.mechanisms": SASL_MECHANISM,
                # The broker only verifies SCRAM clients here, so its login module needs no credentials.
                f"{prefix}{SASL_MECHANISM.lower()}.sasl.jaas.config":
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                f"{prefix}ssl.keystore.type": "PEM",
                f"{prefix}ssl.keystore.location": str(self.keystore_file),
                f"{prefix}ssl.client.auth": "none",
            })
        return props

    def configure(self) -> Path:
        path = self.home / "server.properties"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in self.properties().items()))
        return path

    def up(self, timeout: float = 120.0) -> str:
        if _pid_alive(self.pid_file) and _port_open(self.host, self.port):
            if self.sasl_port is not None and not _port_open(self.host, self.sasl_port):
                raise InfraError(f"kafka is running without a SASL_SSL listener on :{self.sasl_port}; "
                                 "stop it (infra.py down) and start it again")
            _log(f"kafka already running on {self.bootstrap}")
            return self.bootstrap
        for port in (self.port, self.sasl_port):
            if port is not None and _port_open(self.host, port):
                raise InfraError(f"port {port} is taken by another process; set KAFKA_BOOTSTRAP_SERVERS to use it")
        password = None
        if self.sasl_port is not None:
            if (self.home / "data" / "meta.properties").exists() and not self.password_file.exists():
                raise InfraError(f"{self.home / 'data'} was formatted without the SCRAM user; "
                                 "wipe it (infra.py wipe) to start with a SASL_SSL listener")
            self.make_certificates()
            password = self.sasl_password()
        self.fetch()
        config = self.configure()
        if not (self.home / "data" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            _run(self._java("kafka.tools.StorageTool", *self.format_args(config, cluster_id, password)),
                 secret=password)
        log_file = self.home / "kafka.log"
        offset = log_file.stat().st_size if log_file.exists() else 0
        pid = _spawn(self._java("kafka.Kafka", str(config), heap=os.environ.get("CARECRM_KAFKA_HEAP", "768m")),
                     log_file=log_file, pid_file=self.pid_file, cwd=self.home)
        _log(f"kafka starting (pid {pid}), log {log_file}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _pid_alive(self.pid_file) is None:
                raise InfraError(f"kafka exited during start; see {log_file}")
            with log_file.open("rb") as fh:
                fh.seek(offset)
                started = b"Kafka Server started" in fh.read()
            if started and _port_open(self.host, self.port) and (
                    self.sasl_port is None or _port_open(self.host, self.sasl_port)):
                _log(f"kafka ready on {self.bootstrap}"
                     + (f", SASL_SSL on {self.host}:{self.sasl_port}" if self.sasl_port is not None else ""))
                return self.bootstrap
            time.sleep(0.25)
        raise InfraError(f"kafka not ready after {timeout:.0f}s; see {log_file}")

    def down(self) -> None:
        # After consumer groups were used, the JVM can stay up long after the broker has stopped
        # serving; its log segments are in the page cache by then and a restart recovers them.
        _stop(self.pid_file, "kafka", timeout=10.0)


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
        if _pid_alive(self.pid_file) and _port_open(self.host, self.port):
            return self.url
        if _port_open(self.host, self.port):
            raise InfraError(f"port {self.port} is taken by another process; set CARECRM_POSTGRES_PORT")
        bindir = _postgres_bin()
        self.home.mkdir(parents=True, exist_ok=True)
        fresh = not (self.data / "PG_VERSION").exists()
        if fresh:
            shutil.rmtree(self.data, ignore_errors=True)
            self.data.mkdir(mode=0o700)
            self._give_to_owner()
            _run(self._as_owner([str(bindir / "initdb"), "-D", str(self.data), "-U", "postgres", "--auth=trust",
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
        _run(self._as_owner([str(bindir / "pg_ctl"), "-D", str(self.data), "-l", str(log_file), "-w",
                             "-t", str(int(timeout)), "-o", options, "start"]))
        pid = (self.data / "postmaster.pid").read_text().split()[0]
        self.pid_file.write_text(pid)
        _log(f"postgresql ready on {self.host}:{self.port} (pid {pid})")
        if fresh:
            self.psql(f"CREATE DATABASE {self.database}", database="postgres")
        self.psql((HERE / "postgres" / "mirror_gin.sql").read_text())
        return self.url

    def down(self) -> None:
        if _pid_alive(self.pid_file) is None:
            self.pid_file.unlink(missing_ok=True)
            return
        _log("stopping postgresql")
        try:
            _run(self._as_owner([str(_postgres_bin() / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop"]))
        except InfraError:
            _stop(self.pid_file, "postgresql")
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
        _log(f"building FerretDB {FERRETDB_VERSION} from the Go module proxy (a minute or two, once)")
        _run(["go", "build", "-mod=mod", "-o", str(tmp), "."], cwd=HERE / "ferretdb", env=env)
        tmp.rename(self.binary)

    def up(self, timeout: float = 60.0) -> str:
        if _pid_alive(self.pid_file) and _port_open(self.host, self.port):
            self.postgres.up()
            _log(f"ferretdb already running on {self.url}")
            return self.url
        if _port_open(self.host, self.port):
            raise InfraError(f"port {self.port} is taken by another process; set MONGODB_URL to use it")
        self.build()
        backend = self.postgres.up()
        self.home.mkdir(parents=True, exist_ok=True)
        cmd = [str(self.binary), f"-postgresql-url={backend}?pool_max_conns={POSTGRES_CONNECTIONS}",
               f"-listen-addr={self.host}:{self.port}",
               "-log-level=error"]
        pid = _spawn(cmd, log_file=self.home / "ferretdb.log", pid_file=self.pid_file, cwd=self.home)
        _log(f"ferretdb starting (pid {pid})")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if _pid_alive(self.pid_file) is None:
                raise InfraError(f"ferretdb exited during start; see {self.home / 'ferretdb.log'}")
            if _port_open(self.host, self.port):
                _log(f"ferretdb ready on {self.url}")
                return self.url
            time.sleep(0.1)
        raise InfraError(f"ferretdb not ready after {timeout:.0f}s")

    def down(self) -> None:
        _stop(self.pid_file, "ferretdb")
        self.postgres.down()


def up(kafka: Kafka | None = None) -> dict[str, str]:
    """Start what is not configured externally; return the addresses to use (Kafka's PLAINTEXT one)."""
    env: dict[str, str] = {}
    env["KAFKA_BOOTSTRAP_SERVERS"] = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or (kafka or Kafka()).up()
    env["MONGODB_URL"] = os.environ.get("MONGODB_URL") or FerretDB().up()
    return env


def down() -> None:
    if not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        Kafka().down()
    if not os.environ.get("MONGODB_URL"):
        FerretDB().down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status", "wipe"])
    parser.add_argument("--kafka-sasl-port", type=int, metavar="PORT",
                        help="also listen with SASL_SSL and SCRAM-SHA-512 on PORT (default: CARECRM_KAFKA_SASL_PORT)")
    args = parser.parse_args(argv)
    kafka = Kafka(sasl_port=args.kafka_sasl_port) if args.kafka_sasl_port else Kafka()
    try:
        if args.command == "up":
            started = time.monotonic()
            addresses = up(kafka)
            if kafka.sasl_port is not None and not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
                # What a service needs; the PLAINTEXT listener stays for local tools.
                addresses = {**kafka.client_settings(), "MONGODB_URL": addresses["MONGODB_URL"]}
                _log(f"PLAINTEXT listener (local tools, no authentication) on {kafka.bootstrap}")
            for key, value in addresses.items():
                print(f"{key}={value}")
            _log(f"infrastructure ready in {time.monotonic() - started:.1f}s")
        elif args.command == "down":
            down()
        elif args.command == "wipe":
            down()
            shutil.rmtree(RUN_DIR / "kafka", ignore_errors=True)
            shutil.rmtree(RUN_DIR / "ferretdb", ignore_errors=True)
            shutil.rmtree(RUN_DIR / "postgres", ignore_errors=True)
        else:
            for name, svc in (("kafka", kafka), ("ferretdb", FerretDB()), ("postgresql", Postgres())):
                pid = _pid_alive(svc.pid_file)
                print(f"{name}: {'running, pid ' + str(pid) if pid else 'stopped'}")
    except InfraError as exc:
        _log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

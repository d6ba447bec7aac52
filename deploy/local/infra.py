"""Embedded infrastructure for local runs and tests: Apache Kafka (KRaft) and FerretDB.

Standard library only, so it runs before the virtual environment exists.

    python3 deploy/local/infra.py up | down | status

Kafka's jars come from Maven Central through the machine's Maven (see ``kafka/pom.xml``);
FerretDB is built from the Go module proxy (see ``ferretdb/go.mod``). Both are cached under
``CARECRM_CACHE_DIR`` (default ``.cache``); data, logs and pid files live in ``CARECRM_RUN_DIR``
(default ``.run``). When ``KAFKA_BOOTSTRAP_SERVERS`` or ``MONGODB_URL`` is set, that server is
used as it is and nothing is started for it.
"""

from __future__ import annotations

import argparse
import base64
import os
import re
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


def _env_path(name: str, default: Path) -> Path:
    return Path(os.environ.get(name) or default).resolve()


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


def _run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None) -> None:
    _log("$ " + " ".join(cmd))
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InfraError(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}")


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

    def configure(self) -> Path:
        props = {
            "process.roles": "broker,controller",
            "node.id": "1",
            "controller.quorum.bootstrap.servers": f"{self.host}:{self.controller_port}",
            "listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "advertised.listeners": f"PLAINTEXT://{self.host}:{self.port},CONTROLLER://{self.host}:{self.controller_port}",
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "listener.security.protocol.map": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
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
        path = self.home / "server.properties"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("".join(f"{k}={v}\n" for k, v in props.items()))
        return path

    def up(self, timeout: float = 120.0) -> str:
        if _pid_alive(self.pid_file) and _port_open(self.host, self.port):
            _log(f"kafka already running on {self.bootstrap}")
            return self.bootstrap
        if _port_open(self.host, self.port):
            raise InfraError(f"port {self.port} is taken by another process; set KAFKA_BOOTSTRAP_SERVERS to use it")
        self.fetch()
        config = self.configure()
        if not (self.home / "data" / "meta.properties").exists():
            cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
            # "=" form: a base64url id may start with "-", which would read as an option.
            _run(self._java("kafka.tools.StorageTool", "format", "--standalone", "--ignore-formatted",
                            f"--cluster-id={cluster_id}", "--config", str(config)))
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
            if started and _port_open(self.host, self.port):
                _log(f"kafka ready on {self.bootstrap}")
                return self.bootstrap
            time.sleep(0.25)
        raise InfraError(f"kafka not ready after {timeout:.0f}s; see {log_file}")

    def down(self) -> None:
        _stop(self.pid_file, "kafka")


@dataclass(frozen=True)
class FerretDB:
    host: str = "127.0.0.1"
    port: int = int(os.environ.get("CARECRM_FERRETDB_PORT", "27017"))
    run_dir: Path = RUN_DIR

    @property
    def binary(self) -> Path:
        return CACHE_DIR / "bin" / f"ferretdb-{FERRETDB_VERSION}"

    @property
    def home(self) -> Path:
        return self.run_dir / "ferretdb"

    @property
    def pid_file(self) -> Path:
        return self.home / "ferretdb.pid"

    @property
    def url(self) -> str:
        return f"mongodb://{self.host}:{self.port}/"

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
            _log(f"ferretdb already running on {self.url}")
            return self.url
        if _port_open(self.host, self.port):
            raise InfraError(f"port {self.port} is taken by another process; set MONGODB_URL to use it")
        self.build()
        data = self.home / "data"
        data.mkdir(parents=True, exist_ok=True)
        cmd = [str(self.binary), f"-sqlite-url=file:{data}/", f"-listen-addr={self.host}:{self.port}",
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


def up() -> dict[str, str]:
    """Start what is not configured externally; return the addresses to use."""
    env: dict[str, str] = {}
    env["KAFKA_BOOTSTRAP_SERVERS"] = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or Kafka().up()
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
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            started = time.monotonic()
            for key, value in up().items():
                print(f"{key}={value}")
            _log(f"infrastructure ready in {time.monotonic() - started:.1f}s")
        elif args.command == "down":
            down()
        elif args.command == "wipe":
            down()
            shutil.rmtree(RUN_DIR / "kafka", ignore_errors=True)
            shutil.rmtree(RUN_DIR / "ferretdb", ignore_errors=True)
        else:
            for name, svc in (("kafka", Kafka()), ("ferretdb", FerretDB())):
                pid = _pid_alive(svc.pid_file)
                print(f"{name}: {'running, pid ' + str(pid) if pid else 'stopped'}")
    except InfraError as exc:
        _log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

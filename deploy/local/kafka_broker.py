"""The embedded Apache Kafka (KRaft): one broker and controller, with a SASL_SSL listener on demand.

Its jars come from Maven Central through the machine's Maven (see ``kafka/pom.xml``). With a SASL
port it also listens with SASL_SSL and SCRAM-SHA-512, with a certificate from a local CA made by
``openssl``. Standard library only.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import re
import secrets
import shutil
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from deploy.local.processes import (
    CACHE_DIR,
    HERE,
    RUN_DIR,
    InfraError,
    env_port,
    log,
    pid_alive,
    port_open,
    run,
    spawn,
    stop,
)

SASL_MECHANISM = "SCRAM-SHA-512"
SASL_LISTENER = "SASL_SSL"


@dataclass(frozen=True)
class Kafka:
    host: str = "127.0.0.1"
    port: int = int(os.environ.get("CARECRM_KAFKA_PORT", "9092"))
    controller_port: int = int(os.environ.get("CARECRM_KAFKA_CONTROLLER_PORT", "9093"))
    #: Where the data, logs and pid file live; a second instance (fault tests) takes another one.
    run_dir: Path = RUN_DIR
    #: A SASL_SSL listener with SCRAM-SHA-512 on this port besides PLAINTEXT; None: PLAINTEXT only.
    sasl_port: int | None = env_port("CARECRM_KAFKA_SASL_PORT")
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
        run([openssl, "req", "-x509", "-config", cnf, "-extensions", "ca", "-newkey", "rsa:2048", "-nodes",
             "-sha256", "-days", "3650", "-subj", "/CN=carecrm local development CA",
             "-keyout", str(work / "ca.key"), "-out", str(work / "ca.pem")])
        run([openssl, "req", "-new", "-config", cnf, "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
             "-keyout", str(work / "broker.key"), "-out", str(work / "broker.csr")])
        run([openssl, "x509", "-req", "-in", str(work / "broker.csr"), "-CA", str(work / "ca.pem"),
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
        log(f"fetching Apache Kafka {self.version} and its runtime dependencies with Maven")
        run(["mvn", "-B", "-q", "-f", str(HERE / "kafka" / "pom.xml"), "dependency:copy-dependencies",
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
        if pid_alive(self.pid_file) and port_open(self.host, self.port):
            if self.sasl_port is not None and not port_open(self.host, self.sasl_port):
                raise InfraError(f"kafka is running without a SASL_SSL listener on :{self.sasl_port}; "
                                 "stop it (infra.py down) and start it again")
            log(f"kafka already running on {self.bootstrap}")
            return self.bootstrap
        for port in (self.port, self.sasl_port):
            if port is not None and port_open(self.host, port):
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
            run(self._java("kafka.tools.StorageTool", *self.format_args(config, cluster_id, password)),
                secret=password)
        log_file = self.home / "kafka.log"
        offset = log_file.stat().st_size if log_file.exists() else 0
        pid = spawn(self._java("kafka.Kafka", str(config), heap=os.environ.get("CARECRM_KAFKA_HEAP", "768m")),
                    log_file=log_file, pid_file=self.pid_file, cwd=self.home)
        log(f"kafka starting (pid {pid}), log {log_file}")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if pid_alive(self.pid_file) is None:
                raise InfraError(f"kafka exited during start; see {log_file}")
            with log_file.open("rb") as fh:
                fh.seek(offset)
                started = b"Kafka Server started" in fh.read()
            if started and port_open(self.host, self.port) and (
                    self.sasl_port is None or port_open(self.host, self.sasl_port)):
                log(f"kafka ready on {self.bootstrap}"
                    + (f", SASL_SSL on {self.host}:{self.sasl_port}" if self.sasl_port is not None else ""))
                return self.bootstrap
            time.sleep(0.25)
        raise InfraError(f"kafka not ready after {timeout:.0f}s; see {log_file}")

    def down(self) -> None:
        # After consumer groups were used, the JVM can stay up long after the broker has stopped
        # serving; its log segments are in the page cache by then and a restart recovers them.
        stop(self.pid_file, "kafka", timeout=10.0)

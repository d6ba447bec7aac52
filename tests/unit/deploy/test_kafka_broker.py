"""The embedded Kafka's configuration, with and without its SASL_SSL listener; nothing is started.

``kafka_broker.py`` is loaded as a module of its own: the shared ``deploy.local.kafka_broker`` reads
its ports from the environment at import, which the session fixtures set first.
"""

from __future__ import annotations

import importlib.util
import socket
import ssl
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

KAFKA_BROKER = Path(__file__).resolve().parents[3] / "deploy" / "local" / "kafka_broker.py"


@pytest.fixture(scope="module")
def local() -> ModuleType:
    spec = importlib.util.spec_from_file_location("kafka_broker_under_test", KAFKA_BROKER)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up by name
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def kafka(local: ModuleType, tmp_path: Path, **kw: object) -> Any:
    return local.Kafka(port=29092, controller_port=29093, run_dir=tmp_path, **{"sasl_port": None, **kw})


@pytest.fixture(scope="module")
def certified(local: ModuleType, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """A broker whose certificates are made (RSA keys take a second or two)."""
    broker = kafka(local, tmp_path_factory.mktemp("certified"), sasl_port=29094)
    broker.make_certificates()
    return broker


def test_without_a_sasl_port_the_broker_has_only_its_plaintext_and_controller_listeners(
        local: ModuleType, tmp_path: Path) -> None:
    props = kafka(local, tmp_path).properties()
    assert props["listeners"] == "PLAINTEXT://127.0.0.1:29092,CONTROLLER://127.0.0.1:29093"
    assert props["advertised.listeners"] == props["listeners"]
    assert props["listener.security.protocol.map"] == "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"
    assert not [key for key in props if "sasl" in key or "ssl" in key]


def test_a_sasl_port_adds_a_sasl_ssl_listener_with_scram_and_a_pem_keystore(
        local: ModuleType, tmp_path: Path) -> None:
    broker = kafka(local, tmp_path, sasl_port=29094)
    props = broker.properties()
    assert props["listeners"].split(",") == [
        "PLAINTEXT://127.0.0.1:29092", "SASL_SSL://127.0.0.1:29094", "CONTROLLER://127.0.0.1:29093"]
    assert props["advertised.listeners"] == props["listeners"]
    assert "SASL_SSL:SASL_SSL" in props["listener.security.protocol.map"].split(",")
    assert props["inter.broker.listener.name"] == "PLAINTEXT"
    assert props["controller.listener.names"] == "CONTROLLER"
    assert props["sasl.enabled.mechanisms"] == "SCRAM-SHA-512"
    assert props["listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config"] == (
        "org.apache.kafka.common.security.scram.ScramLoginModule required;")
    assert props["listener.name.sasl_ssl.ssl.keystore.type"] == "PEM"
    assert props["listener.name.sasl_ssl.ssl.keystore.location"] == str(broker.keystore_file)
    assert props["listener.name.sasl_ssl.ssl.client.auth"] == "none"
    written = broker.configure().read_text()
    assert "listener.name.sasl_ssl.ssl.keystore.type=PEM\n" in written


def test_the_storage_format_creates_the_scram_user_only_with_a_sasl_listener(
        local: ModuleType, tmp_path: Path) -> None:
    broker = kafka(local, tmp_path, sasl_port=29094)
    config = tmp_path / "server.properties"
    plain = broker.format_args(config, "-starts-with-a-dash")
    assert plain == ["format", "--standalone", "--ignore-formatted", "--cluster-id=-starts-with-a-dash",
                     "--config", str(config)]
    scram = broker.format_args(config, "abc", password="s3cret-Pass_1")
    assert scram[-1] == "--add-scram=SCRAM-SHA-512=[name=carecrm,password=s3cret-Pass_1]"


@pytest.mark.parametrize("password", ["a,b", "a]b", "a=b", "a b", ""])
def test_a_scram_password_with_a_separator_is_refused(local: ModuleType, tmp_path: Path, password: str) -> None:
    with pytest.raises(local.InfraError):
        kafka(local, tmp_path, sasl_port=29094).scram_credential(password)


def test_the_password_is_made_once_kept_private_and_given_with_the_client_settings(
        local: ModuleType, tmp_path: Path) -> None:
    broker = kafka(local, tmp_path, sasl_port=29094)
    with pytest.raises(local.InfraError, match="SCRAM password"):
        broker.client_settings()
    password = broker.sasl_password()
    assert len(password) >= 32 and broker.sasl_password() == password
    assert broker.password_file.stat().st_mode & 0o077 == 0
    assert broker.client_settings() == {
        "KAFKA_BOOTSTRAP_SERVERS": "127.0.0.1:29094",
        "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
        "KAFKA_SASL_USERNAME": "carecrm",
        "KAFKA_SASL_PASSWORD": password,
        "KAFKA_SSL_CAFILE": str(broker.ca_file),
    }
    with pytest.raises(local.InfraError, match="no SASL_SSL listener"):
        kafka(local, tmp_path).client_settings()


def test_storage_formatted_without_the_scram_user_is_refused_with_the_way_out(
        local: ModuleType, tmp_path: Path) -> None:
    broker = local.Kafka(port=free_port(), controller_port=free_port(), sasl_port=free_port(), run_dir=tmp_path)
    (broker.home / "data").mkdir(parents=True)
    (broker.home / "data" / "meta.properties").write_text("version=1\n")
    with pytest.raises(local.InfraError, match="formatted without the SCRAM user.*wipe"):
        broker.up()


@pytest.mark.parametrize(("host", "extra"), [("127.0.0.1", None), ("10.0.0.7", "IP:10.0.0.7"),
                                             ("kafka.internal", "DNS:kafka.internal")])
def test_the_broker_certificate_names_localhost_the_loopback_address_and_the_host(
        local: ModuleType, tmp_path: Path, host: str, extra: str | None) -> None:
    names = local.Kafka(host=host, run_dir=tmp_path, sasl_port=29094).subject_alt_names()
    assert names == ["DNS:localhost", "IP:127.0.0.1", *([extra] if extra else [])]


def _handshake(server: ssl.SSLContext, client: ssl.SSLContext, server_hostname: str) -> dict[str, object]:
    """A TLS handshake in memory, without sockets; returns the certificate the client accepted."""
    c_in, c_out, s_in, s_out = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    c = client.wrap_bio(c_in, c_out, server_hostname=server_hostname)
    s = server.wrap_bio(s_in, s_out, server_side=True)
    done = {"c": False, "s": False}
    for _ in range(20):
        for name, side in (("c", c), ("s", s)):
            if not done[name]:
                try:
                    side.do_handshake()
                    done[name] = True
                except ssl.SSLWantReadError:
                    pass
        s_in.write(c_out.read())
        c_in.write(s_out.read())
        if all(done.values()):
            return c.getpeercert()
    raise AssertionError("TLS handshake did not finish")


@pytest.mark.parametrize("server_hostname", ["127.0.0.1", "localhost"])
def test_a_client_trusting_the_local_ca_accepts_the_broker_certificate_strictly(
        certified: Any, server_hostname: str) -> None:
    broker = certified
    assert broker.keystore_file.stat().st_mode & 0o077 == 0
    assert not (broker.sasl_dir / "work").exists()  # the CA key is gone
    keystore = broker.keystore_file.read_text()
    assert keystore.startswith("-----BEGIN PRIVATE KEY-----")  # unencrypted PKCS#8, as PEM keystores take
    assert keystore.count("-----BEGIN CERTIFICATE-----") == 2
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(broker.keystore_file)
    client = ssl.create_default_context(cafile=str(broker.ca_file))
    client.verify_flags |= ssl.VERIFY_X509_STRICT  # what newer Pythons check by default
    cert = _handshake(server, client, server_hostname)
    assert ("DNS", "localhost") in cert["subjectAltName"] and ("IP Address", "127.0.0.1") in cert["subjectAltName"]


def test_a_client_without_the_local_ca_refuses_the_broker_certificate(certified: Any) -> None:
    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server.load_cert_chain(certified.keystore_file)
    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(server, ssl.create_default_context(), "127.0.0.1")


def test_certificates_are_made_once_and_kept(certified: Any) -> None:
    first = certified.ca_file.read_text(), certified.keystore_file.read_text()
    certified.make_certificates()
    assert (certified.ca_file.read_text(), certified.keystore_file.read_text()) == first

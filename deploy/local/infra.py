"""Embedded infrastructure for local runs and tests: Apache Kafka (KRaft) and FerretDB.

Standard library only, so it runs before the virtual environment exists. The servers are
``kafka_broker.py`` and ``store.py`` (FerretDB on PostgreSQL); ``processes.py`` has the directories
and starts and stops their processes; this module brings them up and down together.

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
import os
import shutil
import sys
import time
from pathlib import Path

if not __package__:  # run as a script: its modules are imported as deploy.local.*, from the project root
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from deploy.local.kafka_broker import Kafka  # noqa: E402
from deploy.local.processes import CACHE_DIR, ROOT, RUN_DIR, InfraError, log, pid_alive  # noqa: E402
from deploy.local.store import FERRETDB_VERSION, FerretDB, Postgres  # noqa: E402

# What other code reaches through ``infra``: the servers, their directories and their error.
__all__ = ["CACHE_DIR", "FERRETDB_VERSION", "ROOT", "RUN_DIR", "FerretDB", "InfraError", "Kafka", "Postgres",
           "down", "main", "up"]


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
                log(f"PLAINTEXT listener (local tools, no authentication) on {kafka.bootstrap}")
            for key, value in addresses.items():
                print(f"{key}={value}")
            log(f"infrastructure ready in {time.monotonic() - started:.1f}s")
        elif args.command == "down":
            down()
        elif args.command == "wipe":
            down()
            shutil.rmtree(RUN_DIR / "kafka", ignore_errors=True)
            shutil.rmtree(RUN_DIR / "ferretdb", ignore_errors=True)
            shutil.rmtree(RUN_DIR / "postgres", ignore_errors=True)
        else:
            for name, svc in (("kafka", kafka), ("ferretdb", FerretDB()), ("postgresql", Postgres())):
                pid = pid_alive(svc.pid_file)
                print(f"{name}: {'running, pid ' + str(pid) if pid else 'stopped'}")
    except InfraError as exc:
        log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

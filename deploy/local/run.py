"""Run the four services and the web console in the background on local defaults: ``make up`` /
``make down``.

    python deploy/local/run.py up | down | status

Starts the embedded infrastructure first (see ``infra.py``), creates a development API key with
every scope in ``.run/dev-api-key`` (its hash is what the services are given), then starts each
service with ``python -m services.<name>``, logs in ``.run/<name>.log``, and waits for ``/health``.
Last comes the console (``python -m console`` on :8000, log in ``.run/console.log``), a client of
the four services; sign in there with the development key.
With ``CARECRM_KAFKA_SASL_PORT`` set the services reach Kafka over its SASL_SSL listener.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))  # run as a script: the project root
from deploy.local import infra, processes  # noqa: E402  (standard library only, like this file)

SERVICES = {"customer": 8001, "tiering": 8002, "complaints": 8003, "notifications": 8004}
CONSOLE_PORT = 8000
SCOPES = sorted({
    "customers:read", "customers:write", "pii:read", "customers:erase",
    "tiers:read", "tiers:write", "policy:write",
    "complaints:read", "complaints:write",
    "notifications:read", "notifications:write",
})
KEY_FILE = infra.RUN_DIR / "dev-api-key"


def _dev_key() -> str:
    if KEY_FILE.exists():
        return KEY_FILE.read_text().strip()
    KEY_FILE.parent.mkdir(parents=True, exist_ok=True)
    key = "ck_" + secrets.token_urlsafe(32)
    KEY_FILE.write_text(key + "\n")
    KEY_FILE.chmod(0o600)
    return key


def _healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _start_sinks() -> None:
    """Local SMTP, SMS and webhook receivers at the notifications service's default addresses."""
    pid_file = infra.RUN_DIR / "sinks.pid"
    if processes.pid_alive(pid_file):
        return
    outbox = infra.RUN_DIR / "outbox"
    processes.spawn([sys.executable, "-m", "deploy.local.sinks", "--dir", str(outbox)],
                    log_file=infra.RUN_DIR / "sinks.log", pid_file=pid_file, cwd=infra.ROOT)
    deadline = time.monotonic() + 20
    while not processes.port_open("127.0.0.1", 1025):
        if time.monotonic() > deadline or processes.pid_alive(pid_file) is None:
            raise infra.InfraError(f"local message sinks did not start; see {infra.RUN_DIR / 'sinks.log'}")
        time.sleep(0.2)
    processes.log(f"local SMTP/SMS/webhook sinks writing to {outbox}")


def up(clock: str = "wall", timeout: float = 90.0) -> None:
    """Start what is not running; a service running with another clock is restarted with ``clock``."""
    addresses = infra.up()
    kafka = infra.Kafka()
    if kafka.sasl_port is not None and not os.environ.get("KAFKA_BOOTSTRAP_SERVERS"):
        addresses.update(kafka.client_settings())  # the services use the SASL_SSL listener
    key = _dev_key()
    entry = {"name": "development", "sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": SCOPES}
    env = {**os.environ, **addresses, "API_KEYS": json.dumps([entry]), "ENVIRONMENT": "development",
           "LOG_FORMAT": "json", "CLOCK": clock}
    _start_sinks()
    for name, port in SERVICES.items():
        pid_file = infra.RUN_DIR / f"{name}.pid"
        clock_file = infra.RUN_DIR / f"{name}.clock"
        running_clock = clock_file.read_text().strip() if clock_file.exists() else "wall"
        if processes.pid_alive(pid_file) and _healthy(port):
            if running_clock == clock:
                processes.log(f"{name} already running on :{port}")
                continue
            processes.log(f"{name} runs on the {running_clock} clock; restarting it on the {clock} clock")
            processes.stop(pid_file, name)
        # Started one at a time: each creates missing topics at start, and they share one broker.
        _start(name, f"services.{name}", port, env, timeout)
        clock_file.write_text(clock)
    _start_console(timeout)
    processes.log(f"development API key (every scope) in {KEY_FILE}")


def _start(name: str, module: str, port: int, env: dict[str, str], timeout: float) -> None:
    """``python -m module`` in the background, its pid and log in the run directory, until healthy."""
    pid_file = infra.RUN_DIR / f"{name}.pid"
    pid = processes.spawn([sys.executable, "-m", module], log_file=infra.RUN_DIR / f"{name}.log",
                          pid_file=pid_file, cwd=infra.ROOT, env=env)
    processes.log(f"{name} starting (pid {pid}) on :{port}")
    deadline = time.monotonic() + timeout
    while not _healthy(port):
        if processes.pid_alive(pid_file) is None:
            raise infra.InfraError(f"{name} exited during start; see {infra.RUN_DIR / (name + '.log')}")
        if time.monotonic() > deadline:
            raise infra.InfraError(f"{name} not healthy after {timeout:.0f}s")
        time.sleep(0.3)


def _start_console(timeout: float) -> None:
    """The web console beside the services; it talks to them over HTTP only."""
    if processes.pid_alive(infra.RUN_DIR / "console.pid") and _healthy(CONSOLE_PORT):
        processes.log(f"console already running on :{CONSOLE_PORT}")
        return
    env = {**os.environ, "ENVIRONMENT": "development", "LOG_FORMAT": "json",
           "CONSOLE_HTTP_PORT": str(CONSOLE_PORT),
           # The session secret is generated on first start and kept beside the development key.
           "CONSOLE_SECRET_FILE": str(infra.RUN_DIR / "console-secret"),
           **{f"CONSOLE_{name.upper()}_URL": f"http://127.0.0.1:{port}" for name, port in SERVICES.items()}}
    _start("console", "console", CONSOLE_PORT, env, timeout)


def down() -> None:
    processes.stop(infra.RUN_DIR / "console.pid", "console")
    for name in SERVICES:
        processes.stop(infra.RUN_DIR / f"{name}.pid", name)
    processes.stop(infra.RUN_DIR / "sinks.pid", "sinks")
    infra.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status"])
    parser.add_argument("--clock", choices=["wall", "event"], default="wall",
                        help="event: judge time rules as of the newest event seen (for replays of old data)")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up(args.clock)
            for name, port in SERVICES.items():
                print(f"{name:<14} http://127.0.0.1:{port}  (docs /docs, AsyncAPI /asyncapi.json)")
            print(f"{'console':<14} http://127.0.0.1:{CONSOLE_PORT}/  (sign in with the API key)")
            print(f"API key: {KEY_FILE}")
        elif args.command == "down":
            down()
        else:
            for name, port in {**SERVICES, "console": CONSOLE_PORT}.items():
                pid = processes.pid_alive(infra.RUN_DIR / f"{name}.pid")
                state = "healthy" if pid and _healthy(port) else ("running" if pid else "stopped")
                print(f"{name:<14} {state}")
    except infra.InfraError as exc:
        processes.log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Run the four services in the background on local defaults: ``make up`` / ``make down``.

    python deploy/local/run.py up | down | status

Starts the embedded infrastructure first (see ``infra.py``), creates a development API key with
every scope in ``.run/dev-api-key`` (its hash is what the services are given), then starts each
service with ``python -m services.<name>``, logs in ``.run/<name>.log``, and waits for ``/health``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import infra  # noqa: E402  (standard library only, like this file)

SERVICES = {"customer": 8001, "tiering": 8002, "complaints": 8003, "notifications": 8004}
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


def up(timeout: float = 90.0) -> None:
    addresses = infra.up()
    key = _dev_key()
    entry = {"name": "development", "sha256": hashlib.sha256(key.encode()).hexdigest(), "scopes": SCOPES}
    env = {**os.environ, **addresses, "API_KEYS": json.dumps([entry]), "ENVIRONMENT": "development",
           "LOG_FORMAT": "json"}
    for name, port in SERVICES.items():
        pid_file = infra.RUN_DIR / f"{name}.pid"
        if infra._pid_alive(pid_file) and _healthy(port):
            infra._log(f"{name} already running on :{port}")
            continue
        pid = infra._spawn([sys.executable, "-m", f"services.{name}"], log_file=infra.RUN_DIR / f"{name}.log",
                           pid_file=pid_file, cwd=infra.ROOT)
        infra._log(f"{name} starting (pid {pid}) on :{port}")
        # Started one at a time: each creates missing topics at start, and they share one broker.
        deadline = time.monotonic() + timeout
        while not _healthy(port):
            if infra._pid_alive(pid_file) is None:
                raise infra.InfraError(f"{name} exited during start; see {infra.RUN_DIR / (name + '.log')}")
            if time.monotonic() > deadline:
                raise infra.InfraError(f"{name} not healthy after {timeout:.0f}s")
            time.sleep(0.3)
    infra._log(f"development API key (every scope) in {KEY_FILE}")


def down() -> None:
    for name in SERVICES:
        infra._stop(infra.RUN_DIR / f"{name}.pid", name)
    infra.down()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["up", "down", "status"])
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            up()
            for name, port in SERVICES.items():
                print(f"{name:<14} http://127.0.0.1:{port}  (docs /docs, AsyncAPI /asyncapi.json)")
            print(f"API key: {KEY_FILE}")
        elif args.command == "down":
            down()
        else:
            for name, port in SERVICES.items():
                pid = infra._pid_alive(infra.RUN_DIR / f"{name}.pid")
                state = "healthy" if pid and _healthy(port) else ("running" if pid else "stopped")
                print(f"{name:<14} {state}")
    except infra.InfraError as exc:
        infra._log(f"error: {exc}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

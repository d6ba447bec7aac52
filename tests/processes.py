"""The services as separate operating-system processes, for end-to-end and fault tests.

Each process is ``python -m services.<name>`` with its settings given only through the environment,
its log in a file (JSON lines, so a test can read what it logged), a free HTTP port, and a
``/health`` wait. ``stop()`` is a clean SIGTERM; ``kill()`` is ``kill -9``.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class ServiceProcess:
    """One service process; ``env`` holds its settings (unprefixed names apply to it alone here)."""

    name: str
    env: dict[str, str]
    log_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None
    starts: int = 0
    #: What runs (``services.<name>`` unless given) and, for a program that reads only prefixed
    #: settings (the console's ``CONSOLE_``), the prefix of its port and host.
    module: str = ""
    prefix: str = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def start(self, timeout: float = 60.0) -> ServiceProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "ENVIRONMENT": "development", "LOG_FORMAT": "json",
               **self.env, f"{self.prefix}HTTP_PORT": str(self.port), f"{self.prefix}HTTP_HOST": "127.0.0.1"}
        if not self.prefix:
            env.pop(f"{self.name.upper()}_HTTP_PORT", None)
        self.starts += 1
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", self.module or f"services.{self.name}"], cwd=ROOT,
                                            env=env, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        # One client for every probe: a new one per request costs some 40 ms of CPU (its TLS
        # context), which four processes starting at once on two cores feel.
        with httpx.Client(timeout=1.0) as probe:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"{self.name} exited with {self.process.returncode} during start; "
                                       f"see {self.log_file}:\n{self.log_tail()}")
                try:
                    if probe.get(f"{self.url}/health").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        self.kill()
        raise RuntimeError(f"{self.name} not healthy after {timeout:.0f}s:\n{self.log_tail()}")

    def stop(self, timeout: float = 30.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def kill(self) -> None:
        """``kill -9``: no shutdown hook runs, nothing is flushed or committed."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

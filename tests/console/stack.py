"""The console as an operating-system process (``python -m console``) beside the four services,
and headless Chromium to drive it: Debian's ``/usr/bin/chromium``, never a downloaded browser."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

from tests.processes import ROOT, free_port

try:
    from playwright.async_api import TimeoutError as PlaywrightTimeout
except ImportError:  # need_browser() says what is missing
    PlaywrightTimeout = TimeoutError  # type: ignore[assignment,misc]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ARTIFACTS = ROOT / ".run" / "test-artifacts" / "console"


def need_browser() -> None:
    """Fail under CI, skip elsewhere, when Chromium or Playwright is missing."""
    problem = None
    if not os.access(CHROMIUM, os.X_OK):
        problem = f"{CHROMIUM} is missing (apt-get install chromium)"
    else:
        try:
            import playwright.async_api  # noqa: F401
        except ImportError:
            problem = "the playwright package is missing (install the dev extra)"
    if problem:
        if os.environ.get("CI") == "true":
            pytest.fail(problem, pytrace=False)
        pytest.skip(problem)


@dataclass
class ConsoleProcess:
    env: dict[str, str]
    log_dir: Path
    name: str = "console"
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_file(self) -> Path:
        return self.log_dir / f"{self.name}.log"

    def start(self, timeout: float = 60.0) -> ConsoleProcess:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        env = {**os.environ, "ENVIRONMENT": "development", "LOG_FORMAT": "json", **self.env,
               "CONSOLE_HTTP_PORT": str(self.port), "CONSOLE_HTTP_HOST": "127.0.0.1"}
        with self.log_file.open("ab") as log:
            self.process = subprocess.Popen([sys.executable, "-m", "console"], cwd=ROOT, env=env, stdout=log,
                                            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        with httpx.Client(timeout=2.0) as probe:
            while time.monotonic() < deadline:
                if self.process.poll() is not None:
                    raise RuntimeError(f"the console exited with {self.process.returncode}:\n{self.log_text()[-3000:]}")
                try:
                    if probe.get(f"{self.url}/health").status_code == 200:
                        return self
                except httpx.HTTPError:
                    pass
                time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"the console did not answer within {timeout:.0f}s:\n{self.log_text()[-3000:]}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace") if self.log_file.exists() else ""

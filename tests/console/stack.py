"""The console as an operating-system process (``python -m console``) beside the four services,
and headless Chromium to drive it: Debian's ``/usr/bin/chromium``, never a downloaded browser."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.processes import ROOT, ServiceProcess

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


def console_process(env: dict[str, str], log_dir: Path, name: str = "console") -> ServiceProcess:
    """``python -m console`` as a process like the services' (its settings carry ``CONSOLE_``)."""
    return ServiceProcess(name, env, log_dir, module="console", prefix="CONSOLE_")

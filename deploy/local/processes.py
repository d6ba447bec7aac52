"""The run and cache directories of the local infrastructure, and the processes of its servers:
started in the background, found again by their pid files, stopped. Standard library only."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent


def _env_path(name: str, default: Path) -> Path:
    return Path(os.environ.get(name) or default).resolve()


def env_port(name: str) -> int | None:
    value = os.environ.get(name)
    return int(value) if value else None


CACHE_DIR = _env_path("CARECRM_CACHE_DIR", ROOT / ".cache")
RUN_DIR = _env_path("CARECRM_RUN_DIR", ROOT / ".run")


class InfraError(RuntimeError):
    pass


def log(msg: str) -> None:
    print(f"[infra] {msg}", file=sys.stderr, flush=True)


def port_open(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def pid_alive(pid_file: Path) -> int | None:
    try:
        pid = int(pid_file.read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def run(cmd: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None,
         secret: str | None = None) -> None:
    def shown(text: str) -> str:  # a password on the command line stays out of logs and errors
        return text.replace(secret, "***") if secret else text

    log("$ " + shown(" ".join(cmd)))
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise InfraError(shown(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"))


def spawn(cmd: list[str], *, log_file: Path, pid_file: Path, cwd: Path, env: dict[str, str] | None = None) -> int:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        proc = subprocess.Popen(
            cmd, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,  # survives the shell that started it; stopped by pid
        )
    pid_file.write_text(str(proc.pid))
    return proc.pid


def stop(pid_file: Path, name: str, timeout: float = 30.0) -> None:
    pid = pid_alive(pid_file)
    if pid is None:
        pid_file.unlink(missing_ok=True)
        return
    log(f"stopping {name} (pid {pid})")
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pid_alive(pid_file) is None:
            break
        time.sleep(0.2)
    else:
        log(f"{name} did not stop in {timeout:.0f}s; killing it")
        os.kill(pid, signal.SIGKILL)
    pid_file.unlink(missing_ok=True)

"""A Kafka and a FerretDB of their own for the fault tests.

These tests restart the broker and stop the store, which would break every other test sharing the
session's servers; so they start a dedicated pair on free ports in ``<run dir>/faults/<pid>`` and
kill it at the end, keeping the logs. A directory per test session, so that two runs in one
checkout leave each other alone; what a session that is gone left behind is removed. Services run
as separate processes (``tests/processes.py``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from deploy.local import infra
from tests.processes import ServiceProcess, free_port

from .support import FaultInfra, create_topics

FAULTS_DIR = infra.RUN_DIR / "faults"
RUN_DIR = FAULTS_DIR / str(os.getpid())


def _kill(server: infra.Kafka | infra.FerretDB | infra.Postgres, run_dir: Path) -> None:
    """SIGKILL a server of this run directory: its data is thrown away, so there is nothing to wait
    for. Only a pid that is still a process started on this very run directory is touched."""
    try:
        pid = int(server.pid_file.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
        # FerretDB's command line names no path of ours, but it runs in its home under the run directory.
        cwd = os.readlink(f"/proc/{pid}/cwd")
    except (OSError, ValueError):
        return
    if str(run_dir) in cmdline or cwd.startswith(str(run_dir)):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
        server.pid_file.unlink(missing_ok=True)


def _remove_leftovers() -> None:
    """The directories of test sessions that are gone (their servers too, if still running)."""
    for run_dir in FAULTS_DIR.glob("*"):
        if not run_dir.name.isdigit() or _alive(int(run_dir.name)):
            continue
        _kill(infra.Kafka(run_dir=run_dir), run_dir)
        _kill(infra.FerretDB(run_dir=run_dir), run_dir)
        _kill(infra.Postgres(run_dir=run_dir), run_dir)
        shutil.rmtree(run_dir, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@pytest.fixture(scope="session")
def faults() -> Iterator[FaultInfra]:
    _remove_leftovers()
    shutil.rmtree(RUN_DIR, ignore_errors=True)
    kafka = infra.Kafka(port=free_port(), controller_port=free_port(), run_dir=RUN_DIR)
    ferretdb = infra.FerretDB(port=free_port(), run_dir=RUN_DIR, postgres_port=free_port())
    servers = FaultInfra(kafka=kafka, ferretdb=ferretdb, log_root=RUN_DIR / "logs")
    try:
        kafka.up()
        ferretdb.up()
        create_topics(servers)
        yield servers
    finally:
        _kill(kafka, RUN_DIR)
        _kill(ferretdb, RUN_DIR)
        _kill(ferretdb.postgres, RUN_DIR)
        for data in (kafka.home / "data", ferretdb.postgres.home):
            shutil.rmtree(data, ignore_errors=True)


@pytest.fixture
def launch(faults: FaultInfra, request: pytest.FixtureRequest) -> Iterator[object]:
    """``launch(name, label, **env)`` makes a service process on the dedicated servers (not yet
    started); every process a test made is killed when it ends, and the servers are back up."""
    made: list[ServiceProcess] = []
    log_dir = faults.log_root / request.node.name

    def make(name: str, label: str | None = None, **env: str) -> ServiceProcess:
        process = ServiceProcess(name, {**faults.service_env(), **env}, log_dir / (label or name))
        made.append(process)
        return process

    yield make
    for process in made:
        process.kill()
    # A test that failed half-way must not leave the next one without its servers.
    if not faults.kafka_running():
        faults.kafka.up()
    if not faults.ferretdb_running():
        faults.ferretdb.up()

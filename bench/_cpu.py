"""CPU time of every process of a benchmark's system, by role: each service, Kafka, FerretDB and
PostgreSQL (its server and every backend), read from /proc, so that a whole-system figure says where
the two cores went."""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from urllib.parse import urlsplit

_TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> list[tuple[int, int, str, float]]:
    """(pid, parent pid, command line, CPU seconds so far) of every process still there."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        found.append((int(entry.name), int(fields[1]), cmdline, (int(fields[11]) + int(fields[12])) / _TICK))
    return found


def cpu_by_role(home: Path, mongodb_url: str, services: Mapping[str, int]) -> Counter[str]:
    """CPU seconds so far of the servers under ``home`` (the FerretDB listening at ``mongodb_url``
    and its PostgreSQL) and of the ``services`` (name -> pid)."""
    port = urlsplit(mongodb_url).port
    table = _processes()
    roles: dict[int, str] = {pid: name for name, pid in services.items()}
    postgres_port = None
    for pid, _, cmdline, _ in table:
        if "kafka.Kafka" in cmdline and str(home) in cmdline:
            roles[pid] = "Kafka"
        elif "ferretdb" in cmdline and f"-listen-addr=127.0.0.1:{port}" in cmdline:
            roles[pid] = "FerretDB"
            if found := re.search(r"postgresql-url=\S+?:(\d+)/", cmdline):
                postgres_port = found.group(1)
    server = next((pid for pid, _, cmdline, _ in table
                   if postgres_port and cmdline.split(" ", 1)[0].endswith("/postgres") and f"-p {postgres_port} " in cmdline),
                  None)
    used: Counter[str] = Counter()
    for pid, parent, _, seconds in table:
        role = roles.get(pid) or ("PostgreSQL" if server in (pid, parent) else None)
        if role:
            used[role] += seconds
    return used

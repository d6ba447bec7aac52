"""Result tables and the machine description.

Every benchmark hands back a ``Section``: rows in which each figure of this system stands beside its
comparison measured in the same run. A benchmark run on its own prints its section; ``python -m
bench`` also collects the sections (as JSON) into ``docs/benchmarks.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

COLUMNS = ("measure", "this system", "comparison (same run)", "ratio", "target")
NONE = "—"


@dataclass
class Row:
    measure: str
    value: str
    comparison: str = NONE
    ratio: str = NONE
    target: str = NONE


@dataclass
class Section:
    name: str
    title: str
    #: What was run, at which sizes: the reader needs it to read the figures.
    scope: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, measure: str, value: str, comparison: str = NONE, ratio: str = NONE, target: str = NONE) -> None:
        self.rows.append(Row(measure, value, comparison, ratio, target))

    def markdown(self) -> str:
        lines = [self.scope, "", "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
        lines += ["| " + " | ".join(_cell(v) for v in asdict(row).values()) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, indent=1)

    @classmethod
    def from_json(cls, text: str) -> Section:
        raw = json.loads(text)
        return cls(**{**raw, "rows": [Row(**row) for row in raw["rows"]]})


def _cell(value: str) -> str:
    return value.replace("|", "\\|").replace("\n", " ")


def ratio(value: float, comparison: float, digits: int = 2) -> str:
    if not comparison or math.isinf(value) or math.isinf(comparison):
        return NONE
    return f"{value / comparison:.{digits}f}×"


def verdict(met: bool, target: str) -> str:
    return f"{target}: **{'met' if met else 'missed'}**"


def arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The options every benchmark takes, so that ``python -m bench`` can drive each one alike."""
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--json", type=Path, metavar="FILE", help="also write the result section to FILE")
    return parser


def emit(section: Section, json_file: Path | None) -> None:
    print(section.markdown(), flush=True)
    if json_file is not None:
        json_file.write_text(section.to_json())


# --- the machine -------------------------------------------------------------------------------------

def _first(path: str, pattern: str) -> str | None:
    try:
        with open(path) as text:
            for line in text:
                match = re.match(pattern, line)
                if match:
                    return match.group(1).strip()
    except OSError:
        return None
    return None


def machine() -> list[tuple[str, str]]:
    """What the figures were measured on, read at run time."""
    from deploy.local.infra import FERRETDB_VERSION, Kafka

    cpu = _first("/proc/cpuinfo", r"model name\s*:\s*(.+)") or platform.processor() or platform.machine()
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    memory_kb = _first("/proc/meminfo", r"MemTotal:\s*(\d+) kB")
    memory = f"{int(memory_kb) / 1024 / 1024:.1f} GiB" if memory_kb else "unknown"
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "unknown"
    return [
        ("CPU", f"{cpu}, {os.cpu_count()} logical CPUs ({usable} usable by the benchmarks)"),
        ("memory", memory),
        ("operating system", platform.platform()),
        ("Python", f"{platform.python_implementation()} {platform.python_version()}"),
        ("Kafka", f"Apache Kafka {Kafka().version} (KRaft, one broker, run from its jars)"),
        ("FerretDB", f"FerretDB {FERRETDB_VERSION} on PostgreSQL (its own cluster)"),
        ("date", datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")),
        ("load average at start (1, 5, 15 min)", load),
    ]

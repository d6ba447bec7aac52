"""``python -m bench``: run every benchmark, print each one's table and write them all, with the
machine they ran on, to ``docs/benchmarks.md``.

    python -m bench                                    # everything, full sizes, writes docs/benchmarks.md
    python -m bench --only tiering,notifications       # some of them, replacing only their sections
    python -m bench --quick                            # small sizes: a smoke run, writes nothing
    python -m bench --quick --output quick.md          # ... or writes there
    python -m bench --refresh-customers 100000,1000000 # also the population refresh at 1 M customers

Each benchmark runs in a process of its own, so that one's memory or failure does not colour the
next one's figures.
"""

from __future__ import annotations

import argparse
import os
import pkgutil
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench
from bench._report import Section, machine

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUTPUT = ROOT / "docs" / "benchmarks.md"
#: The issue's order; benchmarks added later follow in name order.
ORDER = ("tiering", "notifications", "complaints", "memory", "system", "console")


def available() -> list[str]:
    names = [m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_")]
    return [n for n in ORDER if n in names] + sorted(n for n in names if n not in ORDER)


def run_one(name: str, quick: bool, extra: list[str]) -> tuple[Section, float, bool]:
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        result = Path(tmp) / f"{name}.json"
        command = [sys.executable, "-m", f"bench.{name}", "--json", str(result), *(["--quick"] if quick else []),
                   *extra]
        started = time.monotonic()
        code = subprocess.call(command, cwd=ROOT)
        seconds = time.monotonic() - started
        if code == 0 and result.exists():
            return Section.from_json(result.read_text()), seconds, True
    failed = Section(name, name.capitalize(), f"**Did not complete** (exit code {code}); see the run's output.")
    return failed, seconds, False


def document(sections: list[tuple[Section, float]], described: list[tuple[str, str]], quick: bool,
             command: str, total: float) -> str:
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{command}` (see `bench/`; not part of `make test`). Each figure of this system stands "
        "beside a comparison measured in the same run, on the same machine, against the same Kafka and "
        "FerretDB: ratio = this system / comparison. `python -m bench --quick` is a smoke run at small sizes; "
        "`python -m bench.tiering --profile FILE` runs only the tiering replay under cProfile and writes its "
        "stats to FILE.",
        "",
    ]
    if quick:
        lines += ["**A quick run: smoke-test sizes, not the benchmark's figures.**", ""]
    lines += ["## Machine", "", "| property | value |", "|---|---|"]
    lines += [f"| {key} | {value} |" for key, value in described]
    lines += [f"| whole run | {total / 60:.0f} min |", ""]
    for section, seconds in sections:
        lines += [f"## {section.title}", "", section.markdown(), "", f"(took {seconds / 60:.1f} min)", ""]
    return "\n".join(lines)


def merged(existing: str, sections: list[tuple[Section, float]], described: list[tuple[str, str]],
           command: str) -> str:
    """``existing`` with the sections of this run in place of those of the same title (new ones at
    the end): a partial rerun keeps the other figures, each rerun section saying when and how it ran."""
    head, *blocks = re.split(r"(?m)^(?=## )", existing)
    at = {block.splitlines()[0][3:].strip(): i for i, block in enumerate(blocks)}
    facts = dict(described)
    for section, seconds in sections:
        text = (f"## {section.title}\n\n{section.markdown()}\n\n(took {seconds / 60:.1f} min; rerun alone by "
                f"`{command}` on {facts.get('date', 'an unknown date')}, load average at its start "
                f"{facts.get('load average at start (1, 5, 15 min)', 'unknown')})\n\n")
        if section.title in at:
            blocks[at[section.title]] = text
        else:
            blocks.append(text)
    return head + "".join(blocks).rstrip("\n") + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", metavar="NAME,NAME", help=f"run only these ({', '.join(available())})")
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run; writes no file "
                        "unless --output is given")
    parser.add_argument("--output", type=Path, metavar="FILE", help=f"where the results go (default "
                        f"{DEFAULT_OUTPUT.relative_to(ROOT)}, not written by a quick run)")
    parser.add_argument("--refresh-customers", metavar="N,N", help="tiering: population sizes to refresh")
    args = parser.parse_args(argv)
    names = available()
    if args.only:
        wanted = [n.strip() for n in args.only.split(",") if n.strip()]
        unknown = sorted(set(wanted) - set(names))
        if unknown:
            parser.error(f"no benchmark named {', '.join(unknown)}; there are {', '.join(names)}")
        names = [n for n in names if n in wanted]
    output = args.output or (None if args.quick else DEFAULT_OUTPUT)
    described = machine()  # before the run: the load average says how busy the machine was to begin with
    started = time.monotonic()
    sections = []
    failed = []
    for name in names:
        print(f"\n## {name}\n", flush=True)
        extra = ["--refresh-customers", args.refresh_customers] if name == "tiering" and args.refresh_customers else []
        section, seconds, ok = run_one(name, args.quick, extra)
        sections.append((section, seconds))
        if not ok:
            failed.append(name)
        print(f"\n({name} took {seconds / 60:.1f} min)", flush=True)
    if hasattr(os, "getloadavg"):
        described.append(("load average at the end (1, 5, 15 min)", ", ".join(f"{x:.2f}" for x in os.getloadavg())))
    command = " ".join(["python -m bench", *([f"--only {args.only}"] if args.only else []),
                        *(["--quick"] if args.quick else []),
                        *([f"--refresh-customers {args.refresh_customers}"] if args.refresh_customers else [])])
    if output is not None:
        output.parent.mkdir(parents=True, exist_ok=True)
        if args.only and not args.quick and output.exists():
            output.write_text(merged(output.read_text(), sections, described, command))
        else:
            output.write_text(document(sections, described, args.quick, command, time.monotonic() - started))
        print(f"\nwritten to {output}", flush=True)
    elif args.quick:
        print("\nquick run: nothing written (give --output FILE to keep the tables)", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m bench``: run every benchmark in turn and print their tables."""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time

import bench


def main() -> int:
    names = sorted(m.name for m in pkgutil.iter_modules(bench.__path__) if not m.name.startswith("_"))
    failed = []
    for name in names:
        print(f"\n## {name}\n", flush=True)
        started = time.monotonic()
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception as exc:  # one broken benchmark must not hide the others' figures
            failed.append(name)
            print(f"{name} failed: {type(exc).__name__}: {exc}", file=sys.stderr)
        print(f"\n({name} took {time.monotonic() - started:.0f}s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

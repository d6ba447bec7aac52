"""Write the AsyncAPI 3 and OpenAPI documents of every service under ``docs/``: ``make docs``.

    python -m deploy.docs           # write
    python -m deploy.docs --check   # exit 1 when a committed document differs from the code
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

import yaml

SERVICES = ("customer", "tiering", "complaints", "notifications")
DOCS = Path(__file__).resolve().parent.parent / "docs"


def generate() -> dict[Path, str]:
    """The documents as the code describes them, by path."""
    out: dict[Path, str] = {}
    for name in SERVICES:
        app_module = importlib.import_module(f"services.{name}.app")
        settings_module = importlib.import_module(f"services.{name}.settings")
        settings_cls = next(v for k, v in vars(settings_module).items()
                            if k.endswith("Settings") and getattr(v, "__module__", "") == settings_module.__name__)
        # Pinned so that the documents do not depend on the environment they are generated in.
        app = app_module.build_app(settings_cls(environment="development", kafka_bootstrap_servers="localhost:9092"))
        spec = app.state.runtime.asyncapi(app.title, app.description).to_specification().to_jsonable()
        out[DOCS / "asyncapi" / f"{name}.yaml"] = yaml.safe_dump(spec, sort_keys=True, allow_unicode=True)
        out[DOCS / "openapi" / f"{name}.json"] = json.dumps(app.openapi(), indent=2, sort_keys=True,
                                                            ensure_ascii=False) + "\n"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for path, text in generate().items():
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
            print(f"wrote {path.relative_to(DOCS.parent)}")
    for path in stale:
        print(f"out of date: {path.relative_to(DOCS.parent)} (run make docs)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())

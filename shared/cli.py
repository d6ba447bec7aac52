"""``carecrm``: operator commands that need no service running.

    carecrm ensure-topics        create missing topics with the contract's configuration
    carecrm new-api-key --name N --scopes a:b,c:d
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from . import auth
from .kafka import ensure_topics
from .logging import configure_logging
from .settings import ServiceSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="carecrm", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("ensure-topics", help="create missing topics (reads KAFKA_* settings)")
    key = sub.add_parser("new-api-key", help="make an API key and print its settings entry")
    key.add_argument("--name", required=True)
    key.add_argument("--scopes", required=True)
    args = parser.parse_args(argv)
    if args.command == "new-api-key":
        return auth.main(["new-key", "--name", args.name, "--scopes", args.scopes])
    settings = ServiceSettings(service_name="admin")
    configure_logging(settings.log_level, settings.log_format)
    created = asyncio.run(ensure_topics(settings))
    print(f"created {len(created)} topics" + (f": {', '.join(created)}" if created else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""``python -m services.customer``: run the customer service; ``rotate-keys`` re-encrypts stored PII."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

from shared.logging import configure_logging
from shared.service import serve

from .app import build_app
from .settings import CustomerSettings


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m services.customer")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("serve", help="run the service (the default)")
    sub.add_parser("rotate-keys", help="re-encrypt every stored value under CUSTOMER_PII_ACTIVE_KEY_ID and make "
                                       "every blind index again with CUSTOMER_BLIND_INDEX_KEY")
    args = parser.parse_args(argv)
    settings = CustomerSettings()
    if args.command == "rotate-keys":
        from .rotation import run

        configure_logging(settings.log_level, settings.log_format)
        print(json.dumps({"rewritten": asyncio.run(run(settings))}))
        return 0
    serve(build_app, settings)
    return 0


if __name__ == "__main__":
    sys.exit(main())

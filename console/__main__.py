"""``python -m console``: serve the care console (http://127.0.0.1:8000/ by default)."""

from __future__ import annotations

import logging
import sys

import uvicorn

from shared.logging import configure_logging

from .app import create_app
from .settings import ConsoleSettings


def main() -> int:
    settings = ConsoleSettings()
    configure_logging(settings.log_level, settings.log_format)
    # httpx logs every request's URL at INFO, queries included: phone numbers and e-mail addresses.
    logging.getLogger("httpx").setLevel(max(logging.WARNING, logging.getLevelName(settings.log_level)))
    uvicorn.run(create_app(settings), host=settings.http_host, port=settings.http_port, log_config=None,
                access_log=False, lifespan="on", server_header=False,
                # The sign-in page's pending status polls must not hold a stop up.
                timeout_graceful_shutdown=3)
    return 0


if __name__ == "__main__":
    sys.exit(main())

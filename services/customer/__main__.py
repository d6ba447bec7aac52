"""``python -m services.customer``: run the customer service; ``rotate-keys`` re-encrypts stored PII
and makes the blind indexes again under the active keys."""

from __future__ import annotations

import sys

from shared.service import command_line

from .app import build_app
from .rotation import run
from .settings import CustomerSettings

if __name__ == "__main__":
    sys.exit(command_line("python -m services.customer", build_app, CustomerSettings(), run))

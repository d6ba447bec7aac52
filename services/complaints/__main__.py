"""``python -m services.complaints``: run the complaints service; ``rotate-keys`` re-encrypts what it
seals under the active keys."""

from __future__ import annotations

import sys

from shared.service import command_line

from .app import build_app
from .rotation import run
from .settings import ComplaintsSettings

if __name__ == "__main__":
    sys.exit(command_line("python -m services.complaints", build_app, ComplaintsSettings(), run))

"""``python -m services.notifications``: run the notifications service; ``rotate-keys`` re-encrypts what it
seals under the active keys."""

from __future__ import annotations

import sys

from shared.service import command_line

from .app import build_app
from .rotation import run
from .settings import NotificationsSettings

if __name__ == "__main__":
    sys.exit(command_line("python -m services.notifications", build_app, NotificationsSettings(), run))

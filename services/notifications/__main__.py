"""``python -m services.notifications``: run the notifications service."""

from shared.service import serve

from .app import build_app
from .settings import NotificationsSettings

if __name__ == "__main__":
    serve(build_app, NotificationsSettings())

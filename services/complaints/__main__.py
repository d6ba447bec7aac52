"""``python -m services.complaints``: run the complaints service."""

from shared.service import serve

from .app import build_app
from .settings import ComplaintsSettings

if __name__ == "__main__":
    serve(build_app, ComplaintsSettings())

"""``python -m services.tiering``: run the tiering service."""

from shared.service import serve

from .app import build_app
from .settings import TieringSettings

if __name__ == "__main__":
    serve(build_app, TieringSettings())

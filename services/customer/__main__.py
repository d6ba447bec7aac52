"""``python -m services.customer``: run the customer service."""

from shared.service import serve

from .app import build_app
from .settings import CustomerSettings

if __name__ == "__main__":
    serve(build_app, CustomerSettings())

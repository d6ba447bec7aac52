"""Local delivery endpoints for the notifications service (an SMTP sink and an SMS provider), and a
store of a test's own."""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from services.notifications.handlers import SUBSCRIBED
from services.notifications.repository import INDEXES
from services.notifications.settings import NotificationsSettings
from shared.kafka import ensure_topics
from shared.mongo import Store
from shared.pii import PiiCipher
from tests import helpers
from tests.doubles import SmtpSink, smtp_server


@pytest.fixture
async def store(infra: dict[str, str], unique: str) -> AsyncIterator[Store]:
    """A database of the test's own with the service's indexes; dropped after."""
    opened = Store.connect(NotificationsSettings(mongodb_database=f"test_notifications_{unique}"), INDEXES)
    try:
        yield opened
    finally:
        await opened.client.drop_database(opened.db.name)
        await opened.close()


@pytest.fixture
def cipher() -> PiiCipher:
    return PiiCipher.from_settings(NotificationsSettings())


class SmsProvider:
    """Answers 503 to the first ``fail_first`` requests for a phone number, then 200."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_first: dict[str, int] = {}
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                provider.requests.append({"headers": dict(self.headers), "body": body})
                seen = len(provider.to(body["to"]))
                self.send_response(503 if seen <= provider.fail_first.get(body["to"], 0) else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/sms"

    def to(self, phone: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["body"]["to"] == phone]


@pytest.fixture
def smtp_sink() -> Iterator[tuple[SmtpSink, int]]:
    with smtp_server() as server:
        yield server


@pytest.fixture
def sms_provider() -> Iterator[SmsProvider]:
    provider = SmsProvider()
    thread = threading.Thread(target=provider.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield provider
    finally:
        provider.server.shutdown()
        provider.server.server_close()


async def skip_backlog(settings: NotificationsSettings) -> None:
    # The session wipes the broker: these tests may be the first to need the topics.
    await ensure_topics(settings)
    await helpers.skip_backlog(settings, SUBSCRIBED)

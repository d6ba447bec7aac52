"""Channels against real local servers: an SMTP server, an SMS provider and a webhook receiver."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from services.notifications.channels import (
    DeliveryError,
    EmailChannel,
    Recipient,
    SmsChannel,
    WebhookChannel,
    sign,
    with_retries,
)
from services.notifications.templates import Templates
from tests.doubles import SmtpSink, smtp_server

TEMPLATES = Templates()
TO = Recipient("C-1", "li@example.com", "+8613800138000")


class Provider:
    """A loopback HTTP provider that answers ``fail_first`` requests with ``fail_status``."""

    def __init__(self, fail_first: int = 0, fail_status: int = 503) -> None:
        self.requests: list[dict[str, Any]] = []
        self.fail_first, self.fail_status = fail_first, fail_status
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's naming
                raw = self.rfile.read(int(self.headers["content-length"]))
                provider.requests.append({"headers": dict(self.headers), "raw": raw, "body": json.loads(raw)})
                failing = len(provider.requests) <= provider.fail_first
                self.send_response(provider.fail_status if failing else 200)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/send"

    def __enter__(self) -> Provider:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def smtp() -> Iterator[tuple[SmtpSink, int]]:
    with smtp_server() as server:
        yield server


async def test_an_email_reaches_a_real_smtp_server_with_its_template_locale_and_idempotency_key(
        smtp: tuple[SmtpSink, int]) -> None:
    sink, port = smtp
    channel = EmailChannel(host="127.0.0.1", port=port, sender="care@example.com", username=None, password=None,
                           start_tls=False, timeout=5, pool_size=2)
    rendered = TEMPLATES.render("birthday", "en-US", "email", {"name": "Ann"}, care=True, unsubscribe_url="https://u")
    await channel.send(rendered, TO, "birthday:2027:C-1")
    await channel.send(rendered, TO, "birthday:2027:C-1")  # a pooled connection is reused
    await channel.close()
    assert len(sink.messages) == 2
    message = sink.messages[0]
    assert message["Subject"] == "Happy birthday" and message["To"] == "li@example.com"
    assert message["Content-Language"] == "en-US" and message["X-Idempotency-Key"] == "birthday:2027:C-1"
    assert message["Message-ID"] == sink.messages[1]["Message-ID"]
    assert "Dear Ann, happy birthday!" in message.get_content() and "https://u" in message.get_content()


async def test_an_sms_provider_that_fails_first_is_retried_and_the_message_sent_once() -> None:
    with Provider(fail_first=2) as provider:
        channel = SmsChannel(provider.url, "key-1", timeout=5)
        rendered = TEMPLATES.render("holiday", "zh-CN", "sms", {"name": "李雷", "holiday": "spring_festival"}, care=True)
        attempts = await with_retries(lambda: channel.send(rendered, TO, "holiday:CN:spring_festival:2027:C-1"),
                                      max_attempts=3, backoff=0.01)
        await channel.close()
    assert attempts == 3
    assert len([r for r in provider.requests if r is provider.requests[-1]]) == 1
    keys = {r["headers"]["idempotency-key"] for r in provider.requests}
    assert keys == {"holiday:CN:spring_festival:2027:C-1"}
    body = provider.requests[-1]["body"]
    assert body == {"to": "+8613800138000", "template_code": "SMS_HOLIDAY_01",
                    "params": {"holiday_name": "春节", "name": "李雷"}, "text": "李雷，祝您春节快乐！回复T退订"}
    assert provider.requests[-1]["headers"]["authorization"] == "Bearer key-1"


async def test_a_refusal_by_the_provider_is_not_retried() -> None:
    with Provider(fail_first=5, fail_status=400) as provider:
        channel = SmsChannel(provider.url, "key-1", timeout=5)
        rendered = TEMPLATES.render("birthday", "zh-CN", "sms", {"name": "李雷"}, care=True)
        with pytest.raises(DeliveryError) as caught:
            await with_retries(lambda: channel.send(rendered, TO, "k"), max_attempts=3, backoff=0.01)
        await channel.close()
    assert caught.value.reason == "sms_http_400" and not caught.value.retryable
    assert len(provider.requests) == 1


async def test_an_unreachable_provider_is_retried_until_the_attempts_run_out() -> None:
    channel = SmsChannel("http://127.0.0.1:9/unused", "key-1", timeout=1)
    rendered = TEMPLATES.render("birthday", "zh-CN", "sms", {"name": "李雷"}, care=True)
    delays: list[float] = []

    async def sleep(delay: float) -> None:
        delays.append(delay)

    with pytest.raises(DeliveryError) as caught:
        await with_retries(lambda: channel.send(rendered, TO, "k"), max_attempts=4, backoff=1.0, sleep=sleep)
    await channel.close()
    assert caught.value.retryable and len(delays) == 3
    # Exponential with jitter: each delay lies in [half, full] of 1, 2, 4 seconds.
    assert all(0.5 * 2 ** i <= d <= 2 ** i for i, d in enumerate(delays))


async def test_a_webhook_is_signed_with_hmac_over_timestamp_and_body() -> None:
    with Provider() as receiver:
        channel = WebhookChannel(receiver.url, "s3cret", timeout=5)
        rendered = TEMPLATES.render("welcome", "en-US", "webhook", {"name": "Ann"}, care=True, unsubscribe_url="u")
        await channel.send(rendered, TO, "welcome:C-1")
        await channel.close()
    [request] = receiver.requests
    headers = request["headers"]
    expected = sign(b"s3cret", headers["x-carecrm-timestamp"], request["raw"])
    assert headers["x-carecrm-signature"] == f"sha256={expected}"
    assert sign(b"other", headers["x-carecrm-timestamp"], request["raw"]) != expected
    assert request["body"]["template"] == "welcome" and headers["idempotency-key"] == "welcome:C-1"


async def test_a_staff_alert_goes_to_the_persons_own_webhook_signed_and_naming_them_not_the_customer() -> None:
    with Provider() as customers, Provider() as own:
        channel = WebhookChannel(customers.url, "s3cret", timeout=5)
        rendered = TEMPLATES.render("complaint_resolved", "en-US", "webhook", {"name": "Wang", "complaint_id": "K-1"},
                                    care=False)
        await channel.send(rendered, Recipient("C-1", None, None, staff_id="sup-1", webhook_url=own.url),
                           "staff_alert:e-1")
        with pytest.raises(DeliveryError, match="no_contact"):  # a member of staff without a webhook of their own
            await channel.send(rendered, Recipient("C-1", None, None, staff_id="sup-2"), "staff_alert:e-2")
        await channel.close()
    [request] = own.requests
    assert customers.requests == []
    assert request["body"]["staff_id"] == "sup-1" and "customer_id" not in request["body"]
    headers = request["headers"]
    assert headers["x-carecrm-signature"] == f"sha256={sign(b's3cret', headers['x-carecrm-timestamp'], request['raw'])}"


async def test_a_mail_server_refusing_the_recipient_permanently_is_not_retried(smtp: tuple[SmtpSink, int]) -> None:
    sink, port = smtp

    async def refuse(server: Any, session: Any, envelope: Any, address: str, options: Any) -> str:
        return "550 no such user"

    sink.handle_RCPT = refuse  # type: ignore[attr-defined]
    channel = EmailChannel(host="127.0.0.1", port=port, sender="care@example.com", username=None, password=None,
                           start_tls=False, timeout=5, pool_size=1)
    rendered = TEMPLATES.render("birthday", "en-US", "email", {"name": "Ann"}, care=True, unsubscribe_url="u")
    with pytest.raises(DeliveryError) as caught:
        await with_retries(lambda: channel.send(rendered, TO, "k"), max_attempts=3, backoff=0.01)
    await channel.close()
    assert caught.value.reason == "smtp_550" and not caught.value.retryable
    await asyncio.sleep(0)

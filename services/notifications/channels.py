"""Delivery channels: e-mail over SMTP, SMS through an HTTP provider, HMAC-signed webhooks.

Each send carries the dedupe key as the provider's idempotency key, so a send repeated after a crash
is recognised by the provider. Errors are sorted into retryable (timeouts, connection trouble, 5xx,
429, SMTP 4xx) and permanent; only the first are retried, with exponential backoff and jitter.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from email.header import Header
from email.mime.text import MIMEText
from email.utils import formatdate
from typing import Protocol

import aiosmtplib
import httpx
import structlog

from .templates import Rendered

log = structlog.get_logger(__name__)


class DeliveryError(Exception):
    def __init__(self, reason: str, *, retryable: bool) -> None:
        self.reason = reason
        self.retryable = retryable
        super().__init__(reason)


@dataclass(frozen=True)
class Recipient:
    customer_id: str
    email: str | None
    phone: str | None
    #: A member of staff (a staff alert): their id, and their own webhook where they have one.
    staff_id: str | None = None
    webhook_url: str | None = None


class Channel(Protocol):
    name: str

    async def send(self, message: Rendered, to: Recipient, idempotency_key: str) -> None: ...

    async def close(self) -> None: ...


class EmailChannel:
    """SMTP with a small pool of open connections, so a fan-out does not reconnect per message."""

    name = "email"

    def __init__(self, *, host: str, port: int, sender: str, username: str | None, password: str | None,
                 start_tls: bool, timeout: float, pool_size: int) -> None:
        self._options = {"hostname": host, "port": port, "timeout": timeout, "start_tls": start_tls,
                         "username": username, "password": password if username else None}
        self.sender = sender
        self._idle: list[aiosmtplib.SMTP] = []
        self._slots = asyncio.Semaphore(pool_size)

    async def send(self, message: Rendered, to: Recipient, idempotency_key: str) -> None:
        if not to.email:
            raise DeliveryError("no_contact", retryable=False)
        # The compat32 message classes: the modern header registry costs a millisecond and more per
        # message, which a fan-out of a hundred thousand greetings notices.
        mail = MIMEText(message.body, "plain", "utf-8")
        mail["From"] = self.sender
        mail["To"] = to.email
        mail["Subject"] = Header(message.subject, "utf-8")
        mail["Date"] = formatdate(localtime=False)
        # Same key, same Message-ID: receiving systems drop a repeated delivery.
        mail["Message-ID"] = f"<{hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]}@carecrm>"
        mail["X-Idempotency-Key"] = idempotency_key
        mail["Content-Language"] = message.locale
        async with self._slots:
            client = self._idle.pop() if self._idle else None
            try:
                if client is None or not client.is_connected:
                    client = aiosmtplib.SMTP(**self._options)
                    await client.connect()
                await client.send_message(mail)
            except aiosmtplib.SMTPRecipientsRefused as exc:
                code = exc.recipients[0].code if exc.recipients else 550
                raise DeliveryError(f"smtp_{code}", retryable=400 <= code < 500) from exc
            except aiosmtplib.SMTPResponseException as exc:
                await _quit(client)
                client = None
                raise DeliveryError(f"smtp_{exc.code}", retryable=400 <= exc.code < 500) from exc
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                await _quit(client)
                client = None
                raise DeliveryError(f"smtp_{type(exc).__name__}", retryable=True) from exc
            finally:
                if client is not None:
                    self._idle.append(client)

    async def close(self) -> None:
        while self._idle:
            await _quit(self._idle.pop())


async def _quit(client: aiosmtplib.SMTP | None) -> None:
    if client is None:
        return
    try:
        await client.quit()
    except Exception:  # closing a broken connection; nothing more to do with it
        client.close()


class _HttpChannel:
    def __init__(self, url: str, timeout: float) -> None:
        self.url = url
        self.timeout = timeout
        self.client = httpx.AsyncClient(timeout=timeout)

    async def _post(self, body: dict, headers: dict[str, str], url: str | None = None) -> None:
        raw = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        if self.client.is_closed:  # closed at shutdown while a last message was still being handled
            self.client = httpx.AsyncClient(timeout=self.timeout)
        try:
            response = await self.client.post(url or self.url, content=raw,
                                              headers={"content-type": "application/json", **headers,
                                                       **self._extra_headers(raw)})
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise DeliveryError(f"{self.name}_{type(exc).__name__}", retryable=True) from exc
        if response.status_code >= 300:
            status = response.status_code
            raise DeliveryError(f"{self.name}_http_{status}", retryable=status >= 500 or status in (408, 429))

    def _extra_headers(self, raw: bytes) -> dict[str, str]:
        return {}

    async def close(self) -> None:
        await self.client.aclose()


class SmsChannel(_HttpChannel):
    """A provider API that takes a template code and its parameters (the text goes along for logs)."""

    name = "sms"

    def __init__(self, url: str, api_key: str, timeout: float) -> None:
        super().__init__(url, timeout)
        self.api_key = api_key

    async def send(self, message: Rendered, to: Recipient, idempotency_key: str) -> None:
        if not to.phone:
            raise DeliveryError("no_contact", retryable=False)
        await self._post({"to": to.phone, "template_code": message.sms_code, "params": dict(message.sms_params),
                          "text": message.body},
                         {"authorization": f"Bearer {self.api_key}", "idempotency-key": idempotency_key})


class WebhookChannel(_HttpChannel):
    """POSTs the message to the customer's integration (or a member of staff's own webhook), signed
    with HMAC-SHA256 over timestamp and body."""

    name = "webhook"

    def __init__(self, url: str, secret: str, timeout: float) -> None:
        super().__init__(url, timeout)
        self.secret = secret.encode()

    async def send(self, message: Rendered, to: Recipient, idempotency_key: str) -> None:
        who = {"staff_id": to.staff_id} if to.staff_id else {"customer_id": to.customer_id}
        if to.staff_id and not to.webhook_url:
            raise DeliveryError("no_contact", retryable=False)
        await self._post({**who, "template": message.template, "locale": message.locale,
                          "subject": message.subject, "text": message.body},
                         {"idempotency-key": idempotency_key}, to.webhook_url if to.staff_id else None)

    def _extra_headers(self, raw: bytes) -> dict[str, str]:
        stamp = str(int(time.time()))
        return {"x-carecrm-timestamp": stamp, "x-carecrm-signature": "sha256=" + sign(self.secret, stamp, raw)}


def sign(secret: bytes, timestamp: str, body: bytes) -> str:
    return hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


async def with_retries(attempt: Callable[[], Awaitable[None]], *, max_attempts: int, backoff: float,
                       sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> int:
    """Run ``attempt`` until it succeeds; retry retryable errors with backoff and full jitter.

    Returns the number of attempts made; re-raises the last ``DeliveryError``.
    """
    for n in range(1, max_attempts + 1):
        try:
            await attempt()
            return n
        except DeliveryError as exc:
            exc.attempts = n  # type: ignore[attr-defined]
            if not exc.retryable or n == max_attempts:
                raise
            delay = backoff * 2 ** (n - 1) * (0.5 + random.random() / 2)
            log.info("delivery_retry", reason=exc.reason, attempt=n, retry_in_s=round(delay, 3))
            await sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover

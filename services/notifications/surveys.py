"""Signed survey links: each survey message carries a link that answers for one customer and what
the survey asks about (a complaint, or a general survey: a purchase or a period's satisfaction)
until it expires, like the unsubscribe link but for this purpose alone.

The token is an HMAC of the purpose, the customer, what the link covers and the expiry, so a link
cannot be forged, moved to another customer or subject, kept alive longer, or used to unsubscribe.
A general link's token is signed under a purpose of its own, so it never passes for a complaint's:
its answer cannot score a complaint by naming one. An answer is taken once: its interaction id
derives from the token, and the service records it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlencode

NAMESPACE = uuid.UUID("6f1d3c2e-9a47-4d8e-b3f0-2a5c7e9d1b64")
#: What a general survey link covers: ``purchase:<order id>`` or ``satisfaction:<days>:<period>``.
GENERAL = r"^(purchase|satisfaction):[\w.:\-/#]{1,160}$"


def token(secret: bytes, customer_id: str, complaint_id: str, expires: int) -> str:
    message = f"survey:{customer_id}:{complaint_id}:{expires}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def link(base_url: str, secret: bytes, customer_id: str, complaint_id: str, sent_at: datetime,
         valid_for: timedelta) -> str:
    expires = int((sent_at + valid_for).timestamp())
    query = urlencode({"customer_id": customer_id, "complaint_id": complaint_id, "expires": expires,
                       "token": token(secret, customer_id, complaint_id, expires)})
    return f"{base_url}?{query}"


def refusal(secret: bytes, customer_id: str, complaint_id: str, expires: int, given: str,
            now: datetime) -> str | None:
    """Why a link is refused (its token does not match, or it expired); None when it is good."""
    if not hmac.compare_digest(given, token(secret, customer_id, complaint_id, expires)):
        return "token: does not match the customer and complaint"
    return _expired(expires, now)


def general_token(secret: bytes, customer_id: str, survey: str, expires: int) -> str:
    # JSON keeps the parts apart (ids may hold colons); the purpose is not a complaint link's.
    message = json.dumps(["survey-general", customer_id, survey, expires]).encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()[:32]


def general_link(base_url: str, secret: bytes, customer_id: str, survey: str, sent_at: datetime,
                 valid_for: timedelta) -> str:
    expires = int((sent_at + valid_for).timestamp())
    query = urlencode({"customer_id": customer_id, "survey": survey, "expires": expires,
                       "token": general_token(secret, customer_id, survey, expires)})
    return f"{base_url}?{query}"


def general_refusal(secret: bytes, customer_id: str, survey: str, expires: int, given: str,
                    now: datetime) -> str | None:
    """Why a general link is refused; None when it is good."""
    if not hmac.compare_digest(given, general_token(secret, customer_id, survey, expires)):
        return "token: does not match the customer and survey"
    return _expired(expires, now)


def _expired(expires: int, now: datetime) -> str | None:
    return "expires: the link has expired" if now.timestamp() > expires else None


def answer_id(given: str) -> str:
    """The interaction id of the answer a link gives: the same link always gives the same one."""
    return f"survey-{uuid.uuid5(NAMESPACE, given)}"

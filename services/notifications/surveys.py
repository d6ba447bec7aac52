"""Signed survey links: each survey message carries a link that answers for one customer and one
complaint until it expires, like the unsubscribe link but for this purpose alone.

The token is an HMAC of the purpose, the customer, the complaint and the expiry, so a link cannot
be forged, moved to another customer or complaint, kept alive longer, or used to unsubscribe. An
answer is taken once: its interaction id derives from the token, and the service records it.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import datetime, timedelta
from urllib.parse import urlencode

NAMESPACE = uuid.UUID("6f1d3c2e-9a47-4d8e-b3f0-2a5c7e9d1b64")


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
    if now.timestamp() > expires:
        return "expires: the link has expired"
    return None


def answer_id(given: str) -> str:
    """The interaction id of the answer a link gives: the same link always gives the same one."""
    return f"survey-{uuid.uuid5(NAMESPACE, given)}"

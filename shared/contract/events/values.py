"""The value sets and validated field types that the events' data share."""

from __future__ import annotations

import re
from datetime import date
from functools import lru_cache
from typing import Literal
from zoneinfo import available_timezones

import phonenumbers
from pydantic import AfterValidator, Field
from typing_extensions import Annotated

# --- Value sets -----------------------------------------------------------------------------------

SalesChannel = Literal["online", "store", "phone", "app", "other"]
ContactChannel = Literal["email", "sms", "webhook"]
Needs = Literal["custom", "standard", "latent"]
InteractionKind = Literal[
    "inquiry", "consultation", "suggestion", "visit", "call", "email", "chat", "event",
    "referral", "survey_response", "care_message", "return_visit",
]
ComplaintChannel = Literal["phone", "email", "online", "social", "in_person", "app"]
ComplaintCategory = Literal["product_quality", "service_attitude", "delivery", "billing", "price", "other"]
Severity = Literal["low", "normal", "high", "critical"]
Complexity = Literal["standard", "complex"]
Dimension = Literal["value_tier", "abc_class", "vip", "loyalty", "lifecycle", "rfm_segment", "potential"]
DIMENSIONS: tuple[str, ...] = Dimension.__args__  # type: ignore[attr-defined]
Direction = Literal["initial", "upgrade", "downgrade", "lateral"]
StaffRole = Literal["agent", "supervisor", "manager"]
#: The escalation ladder of a complaint, lowest first.
EscalationRung = Literal["handler", "supervisor", "manager"]
StaffAlertKind = Literal["escalated", "sla_warning", "sla_breached"]
StaffId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")]
TeamName = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9][A-Za-z0-9._\-]*$")]
#: No ``@``: a user part would let ``http://allowed.host:@elsewhere/`` pass a prefix check for another host.
StaffWebhook = Annotated[str, Field(max_length=500, pattern=r"^https?://[^\s@]+$")]


# --- Validators for profile fields --------------------------------------------------------------

@lru_cache(maxsize=1)
def _timezones() -> frozenset[str]:
    return frozenset(available_timezones())


def _e164(value: str) -> str:
    if not re.fullmatch(r"\+[1-9]\d{6,14}", value):
        raise ValueError("phone must be in E.164 form, e.g. +8613800138000")
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError("phone is not a valid E.164 number") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("phone is not a valid number for its country code")
    return value


def _timezone(value: str) -> str:
    if value not in _timezones():
        raise ValueError(f"unknown IANA time zone {value[:64]!r}")
    return value


def _country(value: str) -> str:
    if value not in phonenumbers.SUPPORTED_REGIONS:
        raise ValueError(f"unknown ISO 3166-1 alpha-2 country {value[:8]!r}")
    return value


_LOCALE = re.compile(r"^[a-z]{2,3}(-[A-Z][a-z]{3})?(-([A-Z]{2}|\d{3}))?$")


def _locale(value: str) -> str:
    if not _LOCALE.match(value):
        raise ValueError("locale must be a BCP 47 tag such as zh-CN or en-US")
    return value


def _relationship_since(value: date) -> date:
    if value > date.today():
        raise ValueError("relationship_since is in the future")
    if value.year < 1900:
        raise ValueError("relationship_since is before 1900")
    return value


def _birthday(value: date) -> date:
    if value > date.today():
        raise ValueError("birthday is in the future")
    if value.year < 1900:
        raise ValueError("birthday is before 1900")
    return value


Phone = Annotated[str, Field(max_length=16), AfterValidator(_e164)]
Timezone = Annotated[str, Field(max_length=64), AfterValidator(_timezone)]
Country = Annotated[str, Field(min_length=2, max_length=2), AfterValidator(_country)]
Locale = Annotated[str, Field(max_length=35), AfterValidator(_locale)]
Birthday = Annotated[date, AfterValidator(_birthday)]
Tag = Annotated[str, Field(min_length=1, max_length=64)]
#: A B2B customer's industry and sales region as upstream names them (free text, e.g. ``retail``, ``East China``).
Industry = Annotated[str, Field(min_length=1, max_length=100)]
Region = Annotated[str, Field(min_length=1, max_length=100)]
RelationshipSince = Annotated[date, AfterValidator(_relationship_since)]

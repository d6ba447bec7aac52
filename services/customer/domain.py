"""Pure rules of the customer service: no I/O, time comes from the caller."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import phonenumbers

from shared.contract.events import Consents, CustomerProfile, CustomerProfileData

#: Fields a registration, an update or an API call may set.
PROFILE_FIELDS: tuple[str, ...] = tuple(CustomerProfileData.model_fields)
#: Encrypted at rest and masked for readers without ``pii:read`` (name is encrypted, not masked).
ENCRYPTED_FIELDS: tuple[str, ...] = ("name", "phone", "email", "address")
CONSENT_KEYS: tuple[str, ...] = tuple(Consents.model_fields)
#: Which consent keys are contact channels and which are purposes of contact.
CONSENT_KINDS: Mapping[str, str] = {"email": "channel", "sms": "channel", "care_messages": "purpose",
                                    "marketing": "purpose"}
_NAMESPACE = uuid.UUID("5b0b9a2e-3f1c-4f0e-9d43-3c1f6c1f0c01")


@dataclass(frozen=True)
class ConsentChange:
    key: str
    granted: bool


def event_id(*parts: str) -> str:
    """A deterministic event id: a retry of the same change publishes the same id."""
    return str(uuid.uuid5(_NAMESPACE, "|".join(parts)))


def profile_event_id(customer_id: str, version: int) -> str:
    return event_id("customer.profile.changed", customer_id, str(version))


#: Intake events a customer's document names (id and time). Older ones are known by their time
#: alone: a replay reads a customer's intake events in the order first read, so an event not newer
#: than the newest one forgotten (``Applied.floor``) was applied long ago.
APPLIED_KEPT = 64


@dataclass(frozen=True)
class Applied:
    """The intake events applied to a customer's profile."""

    recent: tuple[tuple[str, datetime], ...] = ()
    floor: datetime | None = None

    def __contains__(self, event: tuple[str, datetime]) -> bool:
        event_id, at = event
        return (self.floor is not None and at <= self.floor) or any(event_id == i for i, _ in self.recent)

    def plus(self, event_id: str, at: datetime) -> Applied:
        recent = (*self.recent, (event_id, at))
        dropped, kept = recent[:-APPLIED_KEPT], recent[-APPLIED_KEPT:]
        floor = max((t for _, t in dropped), default=self.floor)
        if self.floor is not None and floor is not None:
            floor = max(floor, self.floor)
        return Applied(kept, floor)


def erased_event_id(customer_id: str) -> str:
    return event_id("customer.erased", customer_id)


def merge_consents(current: Consents | None, stated: Consents | None) -> Consents | None:
    """Keys stated (not ``None``) replace the current ones; unstated keys keep their value."""
    if stated is None:
        return current
    merged = (current.model_dump() if current else {}) | stated.model_dump(exclude_none=True)
    return Consents(**merged)


def consent_changes(before: Consents | None, after: Consents | None) -> list[ConsentChange]:
    """Each consent whose value differs; a first statement counts as a change."""
    old = before.model_dump() if before else {}
    new = after.model_dump() if after else {}
    return [ConsentChange(key, new[key]) for key in CONSENT_KEYS
            if new.get(key) is not None and new.get(key) != old.get(key)]


def store_precision(at: datetime) -> datetime:
    """``at`` cut to milliseconds, what BSON keeps, so a reloaded profile equals the published one."""
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def new_prospect(*, source: str, at: datetime) -> CustomerProfile:
    """A stub for a customer first seen in a purchase: no contact data yet, marked by its source."""
    return CustomerProfile(status="prospect", source=source[:128], version=1, created_at=at, updated_at=at)


def apply_changes(current: CustomerProfile | None, changes: Mapping[str, Any], *, at: datetime, source: str,
                  activate: bool) -> CustomerProfile | None:
    """The profile after ``changes``, or ``None`` when they change nothing.

    ``changes`` maps profile fields to their new value (``None`` clears a field); consents merge
    key by key. ``activate`` turns a prospect into an active customer (a registration).
    """
    unknown = set(changes) - set(PROFILE_FIELDS)
    if unknown:
        raise ValueError(f"not profile fields: {sorted(unknown)}")
    base = current or CustomerProfile(status="active" if activate else "prospect", source=source[:128],
                                      created_at=at)
    values = base.model_dump()
    for name, value in changes.items():
        if name == "consents":
            consents = value if value is None or isinstance(value, Consents) else Consents(**value)
            merged = merge_consents(base.consents, consents) if consents is not None else None
            values["consents"] = merged.model_dump() if merged else None
        else:
            values[name] = value.model_dump() if hasattr(value, "model_dump") else value
    if activate:
        values["status"] = "active"
    if current is not None and _same(values, base.model_dump()):
        return None
    # A late event (older than the last change) must not move the change time backwards.
    updated_at = max(at, current.updated_at) if current and current.updated_at else at
    values.update(version=current.version + 1 if current else 1, updated_at=updated_at)
    return CustomerProfile.model_validate(values)


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    ignore = {"version", "updated_at", "created_at"}
    return {k: v for k, v in a.items() if k not in ignore} == {k: v for k, v in b.items() if k not in ignore}


def normalise_phone(value: str) -> str:
    """E.164, whatever spacing or punctuation the caller used."""
    try:
        number = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException:
        raise ValueError("phone is not a valid international number") from None
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def normalise_email(value: str) -> str:
    return value.strip().lower()


def mask_phone(value: str) -> str:
    """Country code and the last two digits, e.g. ``+86*********00``."""
    try:
        code = f"+{phonenumbers.parse(value, None).country_code}"
    except phonenumbers.NumberParseException:
        code = "+"
    return code + "*" * max(len(value) - len(code) - 2, 0) + value[-2:]


def mask_email(value: str) -> str:
    """First letter and the domain, e.g. ``l***@example.com``."""
    local, _, domain = value.partition("@")
    return f"{local[:1]}***@{domain}"


def mask_address(_: str) -> str:
    return "***"


def masked(profile: Mapping[str, Any]) -> dict[str, Any]:
    """The profile as a reader without ``pii:read`` sees it."""
    out = dict(profile)
    for name, mask in (("phone", mask_phone), ("email", mask_email), ("address", mask_address)):
        if out.get(name):
            out[name] = mask(out[name])
    return out


def net_spend(entries: Iterable[Mapping[str, Any]]) -> dict[str, str]:
    """Purchases minus refunds per currency; a refund never takes a currency below zero."""
    totals: dict[str, Decimal] = {}
    for entry in sorted(entries, key=lambda e: e["at"]):
        amount = Decimal(entry["amount"])
        currency = entry["currency"]
        if entry["kind"] == "purchase":
            totals[currency] = totals.get(currency, Decimal(0)) + amount
        elif entry["kind"] == "refund":
            totals[currency] = max(totals.get(currency, Decimal(0)) - amount, Decimal(0))
    return {currency: format(total, "f") for currency, total in sorted(totals.items())}


def classification_fields(data: Mapping[str, Any]) -> dict[str, Any]:
    """The tier dimensions of a classification snapshot, without the metrics."""
    dims = ("value_tier", "abc_class", "vip", "loyalty", "lifecycle", "rfm_segment", "potential")
    return {dim: data.get(dim) for dim in dims}

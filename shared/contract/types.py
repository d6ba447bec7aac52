"""Field types with the contract's rules, shared by every event model."""

from __future__ import annotations

import functools
import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

from pydantic import (AfterValidator, BaseModel, BeforeValidator, Field, PlainSerializer, ValidationInfo,
                      WithJsonSchema, field_validator)
from pydantic.networks import validate_email

from .currencies import ISO_4217

#: How far ahead of the receiver's clock an event's ``time`` may be before it is refused.
MAX_FUTURE_SKEW = timedelta(minutes=15)
#: Nothing this system handles happened before this.
MIN_EVENT_TIME = datetime(1970, 1, 1, tzinfo=UTC)
_MAX_AMOUNT = Decimal("1e15")
_CUSTOMER_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:\-]{0,63}$")


def _decimal_string(value: Any) -> Decimal:
    if isinstance(value, Decimal):  # already parsed (a model built in code)
        amount = value
    elif isinstance(value, str):
        if len(value) > 32:
            raise ValueError("decimal string is too long")
        try:
            amount = Decimal(value.strip())
        except InvalidOperation:
            raise ValueError(f"not a decimal string: {value[:32]!r}") from None
    else:
        raise ValueError('amounts are decimal strings such as "199.90", never JSON numbers')
    if not amount.is_finite():
        raise ValueError("amount must be finite")
    if amount.as_tuple().exponent < -4:  # type: ignore[operator]
        raise ValueError("amount has more than 4 decimal places")
    if amount.copy_abs() >= _MAX_AMOUNT:  # abs() rounds in the context: decimal.Overflow on 1E+999999999
        raise ValueError("amount is out of range")
    return amount


def _positive(amount: Decimal) -> Decimal:
    if amount <= 0:
        raise ValueError("amount must be greater than 0")
    return amount


def _currency(code: str) -> str:
    if code not in ISO_4217:
        raise ValueError(f"unknown ISO 4217 currency {code[:8]!r}")
    return code


def _customer_id(value: str) -> str:
    if not _CUSTOMER_ID.match(value):
        raise ValueError("customer id must be 1-64 characters of letters, digits and . _ : -")
    return value


def _event_time(value: datetime, info: ValidationInfo) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError("time must carry a UTC offset (RFC 3339)")
    now = (info.context or {}).get("now") or datetime.now(UTC)
    if value > now + MAX_FUTURE_SKEW:
        raise ValueError(f"time is more than {int(MAX_FUTURE_SKEW.total_seconds() // 60)} minutes in the future")
    if value < MIN_EVENT_TIME:
        raise ValueError("time is before 1970")
    return value


def _naive_refused(value: Any) -> Any:
    # Pydantic would accept a naive datetime and compare it to aware ones later; refuse it here.
    if isinstance(value, datetime) and value.tzinfo is None:
        raise ValueError("time must carry a UTC offset (RFC 3339)")
    return value


def _representable(value: datetime) -> datetime:
    # 9999-12-31T23:59:59-14:00 is a valid datetime whose UTC instant is not: BSON and every
    # conversion to UTC would raise OverflowError long after validation.
    try:
        value.astimezone(UTC)
    except OverflowError:
        raise ValueError("time is out of range") from None
    return value


_serialize_decimal = PlainSerializer(lambda d: format(d, "f"), return_type=str, when_used="always")

#: A decimal carried as a JSON string, e.g. ``"199.90"``.
Amount = Annotated[Decimal, BeforeValidator(_decimal_string), _serialize_decimal]
#: A decimal string greater than zero.
PositiveAmount = Annotated[Decimal, BeforeValidator(_decimal_string), AfterValidator(_positive), _serialize_decimal]
Currency = Annotated[str, Field(min_length=3, max_length=3), AfterValidator(_currency)]
CustomerId = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_customer_id)]
#: When something happened: timezone-aware, not in the future beyond a small clock skew.
EventTime = Annotated[datetime, BeforeValidator(_naive_refused), AfterValidator(_event_time)]
#: A timezone-aware timestamp without the future rule (due times, expiries).
AwareTime = Annotated[datetime, BeforeValidator(_naive_refused), AfterValidator(_representable)]
@functools.lru_cache(maxsize=1024)
def _staff_email(value: str) -> str:
    return validate_email(value)[1]


#: A staff member's work address, as ``EmailStr`` checks it; kept checked per address, since every
#: alert to the same person carries it again (customers' addresses are not kept).
StaffEmail = Annotated[str, Field(max_length=254), AfterValidator(_staff_email),
                       WithJsonSchema({"type": "string", "format": "email", "maxLength": 254})]
ShortText = Annotated[str, Field(max_length=200)]
LongText = Annotated[str, Field(max_length=5000)]


class TextModel(BaseModel):
    """Base of every model whose strings may be stored (events and request bodies alike): any
    character but U+0000, which MongoDB takes and FerretDB on PostgreSQL (jsonb) cannot hold, so it
    is refused at the edge rather than half-stored."""

    @field_validator("*", mode="after")
    @classmethod
    def _no_nul(cls, value: Any) -> Any:
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("text must not contain U+0000 (NUL)")
        return value
Identifier = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[\w.:\-/#]+$")]

"""Raw Kafka record (value, headers, key) to a typed event, or a ``ContractError`` that says why.

Structured mode: the value is the whole CloudEvent as JSON. Binary mode: ``ce_*`` headers carry the
attributes and the value is ``data``. Both end in the same models and the same rules.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter, ValidationError
from pydantic_core import from_json

from .events import EVENT_TYPES, CloudEvent

#: Largest value accepted, in bytes. Kafka's default ``max.message.bytes`` is about 1 MiB.
MAX_EVENT_BYTES = 256 * 1024

_ADAPTER: TypeAdapter[CloudEvent] = TypeAdapter(
    Annotated[Union[tuple(EVENT_TYPES.values())], Field(discriminator="type")]  # type: ignore[arg-type]
)
_TRACEPARENT = re.compile(r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$")
_BINARY_ATTRIBUTES = ("specversion", "id", "source", "type", "subject", "time", "datacontenttype",
                      "dataschemaversion", "traceparent")


class ContractError(ValueError):
    """A message that breaks the contract. ``code`` goes in ``x-error``, ``detail`` in ``x-error-detail``."""

    def __init__(self, code: str, detail: str, *, field: str | None = None) -> None:
        self.code = code
        self.field = field
        self.detail = f"{field}: {detail}" if field else detail
        super().__init__(f"{code}: {self.detail}")


HeaderItems = Mapping[str, Any] | Iterable[tuple[str, Any]]


def _headers(headers: HeaderItems | None) -> dict[str, str]:
    if not headers:
        return {}
    items = headers.items() if isinstance(headers, Mapping) else headers
    out: dict[str, str] = {}
    for key, value in items:
        if isinstance(value, bytes):
            value = value.decode("utf-8", errors="replace")
        out[key.lower()] = value
    return out


def _field(loc: tuple[Any, ...], event_type: str | None) -> str:
    parts = list(loc)
    if parts and parts[0] == event_type:  # discriminated unions prefix the tag
        parts = parts[1:]
    return ".".join(str(p) for p in parts) or "event"


def _from_validation_error(exc: ValidationError, event_type: str | None) -> ContractError:
    err = exc.errors(include_url=False, include_input=False)[0]
    kind, loc = err["type"], tuple(err["loc"])
    if kind == "json_invalid":
        return ContractError("invalid_json", err["msg"])
    if kind in ("union_tag_not_found", "union_tag_invalid"):
        detail = f"unknown event type {event_type[:80]!r}" if event_type else "missing event type"
        return ContractError("unknown_type", detail, field="type")
    if kind == "model_type" and not loc:
        return ContractError("invalid_envelope", "the value is not a JSON object")
    name = _field(loc, event_type)
    if name == "dataschemaversion":
        return ContractError("unsupported_version", "only dataschemaversion 1 is supported", field=name)
    msg = err["msg"].removeprefix("Value error, ")
    code = "invalid_data" if name.startswith("data") else "invalid_envelope"
    return ContractError(code, msg, field=name)


def parse_event(
    value: bytes | None,
    headers: HeaderItems | None = None,
    *,
    key: bytes | str | None = None,
    accept: Collection[str] | None = None,
    now: datetime | None = None,
) -> CloudEvent:
    """Decode one Kafka record into its event model.

    ``accept`` limits the event types allowed (those of the topic read); ``now`` is the clock the
    future-time rule uses (wall time by default); ``key``, when given, must equal ``subject``.
    """
    if value is None:
        raise ContractError("invalid_envelope", "empty value (a tombstone is not an event)")
    if len(value) > MAX_EVENT_BYTES:
        raise ContractError("oversized", f"value of {len(value)} bytes exceeds {MAX_EVENT_BYTES}")
    hdrs = _headers(headers)
    context = {"now": now} if now else None
    if "ce_specversion" in hdrs:
        event_type = hdrs.get("ce_type")
        envelope: dict[str, Any] = {a: hdrs[f"ce_{a}"] for a in _BINARY_ATTRIBUTES if f"ce_{a}" in hdrs}
        if "dataschemaversion" in envelope:
            try:
                envelope["dataschemaversion"] = int(envelope["dataschemaversion"])
            except ValueError:
                raise ContractError("unsupported_version", "dataschemaversion is not an integer",
                                    field="dataschemaversion") from None
        # The same JSON parser as structured mode: a nesting limit instead of the interpreter's
        # RecursionError, and no int() of a 5,000-digit number.
        try:
            envelope["data"] = from_json(value)
        except ValueError as exc:
            raise ContractError("invalid_json", str(exc)[:200]) from None
        try:
            event = _ADAPTER.validate_python(envelope, context=context)
        except ValidationError as exc:
            raise _from_validation_error(exc, event_type) from None
    else:
        try:
            event = _ADAPTER.validate_json(value, context=context)
        except ValidationError as exc:
            raise _from_validation_error(exc, _peek_type(value)) from None
    header_trace = hdrs.get("traceparent")
    if header_trace and event.traceparent is None and _TRACEPARENT.match(header_trace):
        event = event.model_copy(update={"traceparent": header_trace})
    if accept is not None and event.type not in accept:
        raise ContractError("unknown_type", f"{event.type!r} does not belong on this topic", field="type")
    if key is not None:
        key_text = key.decode("utf-8", errors="replace") if isinstance(key, bytes) else key
        if key_text != event.subject:
            raise ContractError("key_mismatch", "the message key must equal the event's subject", field="subject")
    return event


def _peek_type(value: bytes) -> str | None:
    # Only used to name the type in an error message; a failure here changes nothing. ``from_json``
    # rather than ``json.loads``, which raises RecursionError on deeply nested input.
    try:
        doc = from_json(value)
    except ValueError:
        return None
    return doc.get("type") if isinstance(doc, dict) and isinstance(doc.get("type"), str) else None


def serialize_event(event: CloudEvent) -> bytes:
    """The structured-mode JSON value of ``event``."""
    return event.model_dump_json(exclude_none=True).encode()

"""The CloudEvents 1.0 envelope every event of the contract travels in, and the base of every data model."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import ConfigDict, Field
from typing_extensions import Annotated

from ..types import CustomerId, EventTime, TextModel

SPEC_VERSION = "1.0"
SCHEMA_VERSION = 1
_TRACEPARENT = r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$"


class Model(TextModel):
    """Base of every data model: immutable, unknown fields refused, no NUL in text."""

    model_config = ConfigDict(frozen=True, extra="forbid", str_strip_whitespace=True)


class CloudEvent(Model):
    """The CloudEvents 1.0 structured-mode envelope shared by every event."""

    # Extension attributes other than the ones below are tolerated and dropped.
    model_config = ConfigDict(frozen=True, extra="ignore")

    specversion: Literal["1.0"] = SPEC_VERSION
    id: Annotated[str, Field(min_length=1, max_length=256)]
    source: Annotated[str, Field(min_length=1, max_length=512)]
    type: str
    subject: CustomerId
    time: EventTime
    datacontenttype: Literal["application/json"] = "application/json"
    dataschemaversion: Literal[1] = SCHEMA_VERSION
    traceparent: Annotated[str, Field(pattern=_TRACEPARENT)] | None = None
    data: Model

    #: The Kafka topic this event type travels on, set on each concrete event.
    topic: ClassVar[str]

    @property
    def customer_id(self) -> str:
        return self.subject

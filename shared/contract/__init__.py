"""The public event contract as code: envelope, event models, topics, and the one parser."""

from .events import *  # noqa: F403
from .events import COMPLAINT_EVENTS, DIMENSIONS, EVENT_TYPES, INBOUND_EVENTS, OUTBOUND_EVENTS, CloudEvent
from .parser import MAX_EVENT_BYTES, ContractError, parse_event, serialize_event
from .topics import CATALOGUE, DLQ_CATALOGUE, TOPICS, TopicSpec, dlq

__all__ = [  # noqa: F405
    "CATALOGUE", "COMPLAINT_EVENTS", "DIMENSIONS", "DLQ_CATALOGUE", "EVENT_TYPES", "INBOUND_EVENTS",
    "MAX_EVENT_BYTES", "OUTBOUND_EVENTS", "TOPICS", "CloudEvent", "ContractError", "TopicSpec", "dlq",
    "parse_event", "serialize_event",
]

"""structlog, configured once per process: JSON off a terminal, console on one, PII masked.

Per-message context (``event_id``, ``customer_id``, ``trace_id``) is bound with
``structlog.contextvars`` by the Kafka middleware and the HTTP layer, so every line logged while a
message is handled carries it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from typing import Any

import structlog

#: Keys whose values are personal data. They never reach a log line, wherever they are nested.
PII_KEYS = frozenset({
    "name", "phone", "email", "address", "birthday", "description", "comment", "summary",
    "first_name", "last_name", "full_name", "recipient", "to", "body", "password", "api_key",
})
_MASK = "***"
FASTSTREAM_CONTEXT = ("topic", "group_id", "message_id")

_configured = False


def _mask(value: Any, depth: int = 0) -> Any:
    if depth > 5:
        return value
    if isinstance(value, Mapping):
        return {k: (_MASK if k in PII_KEYS and v is not None else _mask(v, depth + 1)) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_mask(v, depth + 1) for v in value]
    return value


def mask_pii(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    """structlog processor: replace the values of PII keys with ``***``."""
    for key, value in event_dict.items():
        if key == "event":
            continue
        if key in PII_KEYS and value is not None:
            event_dict[key] = _MASK
        elif isinstance(value, Mapping | list | tuple):
            event_dict[key] = _mask(value)
    return event_dict


def configure_logging(level: str = "INFO", fmt: str = "auto", *, stream: Any = None) -> None:
    """Configure structlog and the standard library's logging (aiokafka, pymongo, uvicorn) once."""
    global _configured
    stream = stream or sys.stderr
    use_json = fmt == "json" or (fmt == "auto" and not stream.isatty())
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        mask_pii,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if use_json else structlog.dev.ConsoleRenderer(colors=stream.isatty())
    )
    structlog.configure(
        processors=[*shared, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )
    formatter = structlog.stdlib.ProcessorFormatter(
        # FastStream passes the topic, group and message id of its "Received"/"Processed" lines as
        # ``extra``; nothing else a library puts there is let through.
        foreign_pre_chain=[structlog.stdlib.ExtraAdder(allow=FASTSTREAM_CONTEXT), *shared],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.format_exc_info,
            renderer,
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # Libraries that are chatty at INFO: their warnings still come through.
    for noisy in ("aiokafka", "kafka", "pymongo", "uvicorn.access", "faststream.access"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLevelName(level)))
    _configured = True


def get_logger(name: str | None = None) -> structlog.stdlib.BoundLogger:
    return structlog.get_logger(name)

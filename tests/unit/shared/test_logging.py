"""Logging: JSON off a terminal, console on one, PII masked at any depth, context bound."""

from __future__ import annotations

import io
import json
import logging

import structlog

from shared.logging import configure_logging, get_logger


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_off_a_terminal_lines_are_json_with_bound_context_and_masked_pii() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "auto", stream=stream)
    with structlog.contextvars.bound_contextvars(event_id="e-1", customer_id="C-1", trace_id="abc"):
        get_logger("test").info("customer_registered", phone="+8613800138000",
                                profile={"email": "li@example.com", "tier": "high", "nested": [{"name": "Li"}]})
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["event"] == "customer_registered"
    assert (line["event_id"], line["customer_id"], line["trace_id"]) == ("e-1", "C-1", "abc")
    assert line["phone"] == "***"
    assert line["profile"] == {"email": "***", "tier": "high", "nested": [{"name": "***"}]}
    assert "13800138000" not in stream.getvalue() and "li@example.com" not in stream.getvalue()


def test_on_a_terminal_lines_are_for_people() -> None:
    stream = Tty()
    configure_logging("INFO", "auto", stream=stream)
    get_logger("test").info("service_started", service="tiering")
    output = stream.getvalue()
    assert "service_started" in output and not output.lstrip().startswith("{")


def test_standard_library_loggers_go_through_the_same_pipeline() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    logging.getLogger("some.dependency").warning("connection lost")
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["event"] == "connection lost" and line["level"] == "warning"


def test_a_library_lines_extra_keeps_only_the_message_context_faststream_passes() -> None:
    stream = io.StringIO()
    configure_logging("INFO", "json", stream=stream)
    logging.getLogger("carecrm.tiering.broker").info("Processed", extra={
        "topic": "orders.purchases.v1", "group_id": "tiering", "message_id": "7-1700000000",
        "headers": {"x-customer-name": "Li"}})
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert (line["topic"], line["group_id"], line["message_id"]) == ("orders.purchases.v1", "tiering", "7-1700000000")
    assert "headers" not in line

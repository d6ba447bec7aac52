"""Kafka plumbing every service uses: the broker, the dead-letter middleware, topics, publishing.

Delivery is at least once: consumers commit only after the handler finished
(``AckPolicy.NACK_ON_ERROR``), or, for a subscriber that keeps state in memory and writes it later
(``AckPolicy.MANUAL``), only after that write; handlers are idempotent. A record that breaks the contract, or
that a handler rejects, goes to ``<topic>.dlq`` with the reason in its headers, is logged once, and
is committed so the partition moves on. An error that is not the record's fault (the store or the
broker away) is retried with backoff and nothing is committed meanwhile.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable, Iterable, Sequence
from contextvars import ContextVar
from typing import Any, NamedTuple

import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code
from aiokafka.partitioner import DefaultPartitioner, murmur2
from faststream import AckPolicy
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.middlewares import BaseMiddleware
from faststream.security import BaseSecurity, SASLPlaintext, SASLScram256, SASLScram512
from prometheus_client import CollectorRegistry, Counter
from pymongo.errors import ConnectionFailure, ExecutionTimeout, NotPrimaryError, WTimeoutError

from .clock import Clock
from .contract import TOPICS, CloudEvent, ContractError, TopicSpec, dlq, parse_event, serialize_event
from .settings import ServiceSettings

log = structlog.get_logger("shared.kafka")

CLOUDEVENTS_CONTENT_TYPE = "application/cloudevents+json"
#: Errors that are not the message's fault: retried without limit, with backoff.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionFailure, ExecutionTimeout, NotPrimaryError, WTimeoutError, KafkaError, OSError, TimeoutError,
)

_trace_parent: ContextVar[str | None] = ContextVar("traceparent", default=None)
_batch_records: ContextVar[dict[str, Any] | None] = ContextVar("batch_records", default=None)


class Rejected(Exception):
    """Raised by a handler when a well-formed event breaks a rule: the record goes to the DLQ."""

    def __init__(self, code: str, detail: str) -> None:
        self.code = code
        self.detail = detail
        super().__init__(f"{code}: {detail}")


class DeadLetterMiddleware:
    """Middleware factory: parses records into contract events and dead-letters what cannot be used.

    One instance per broker keeps the retry counts and the DLQ counter; FastStream calls it to make
    the per-message middleware.
    """

    def __init__(self, settings: ServiceSettings, clock: Clock, registry: CollectorRegistry,
                 publisher: Publisher) -> None:
        self.settings = settings
        self.clock = clock
        self.publisher = publisher
        #: Told of a message none of whose records reached the handler (dead-lettered, tombstones):
        #: a service whose subscribers commit by themselves (``AckPolicy.MANUAL``) commits it too.
        self.skipped: Callable[[Any], None] | None = None
        self._attempts: dict[tuple[str, int, int], int] = {}
        self.dead_letters = Counter(
            "carecrm_dead_letters", "Records sent to a dead-letter topic", ["topic", "error"], registry=registry,
        )
        self.retries = Counter(
            "carecrm_handler_retries", "Records re-read after a failed attempt", ["topic", "kind"], registry=registry,
        )

    def __call__(self, msg: Any, /, *, context: Any) -> _DeadLetterScope:
        return _DeadLetterScope(msg, context=context, owner=self)

    async def dead_letter(self, record: Any, code: str, detail: str) -> None:
        headers = {
            "x-error": code,
            "x-error-detail": detail[:1000],
            "x-original-topic": record.topic,
            "x-original-partition": str(record.partition),
            "x-original-offset": str(record.offset),
        }
        for key, value in record.headers or ():
            if key.lower() not in headers:
                headers[key] = value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)
        await self.publisher.raw(dlq(record.topic), record.value or b"", record.key, headers)
        self.dead_letters.labels(record.topic, code).inc()
        log.warning("message_dead_lettered", topic=record.topic, partition=record.partition,
                    offset=record.offset, error=code, detail=detail[:300])


class _DeadLetterScope(BaseMiddleware):
    def __init__(self, msg: Any, /, *, context: Any, owner: DeadLetterMiddleware) -> None:
        super().__init__(msg, context=context)
        self.owner = owner

    async def consume_scope(self, call_next: Callable[[Any], Awaitable[Any]], msg: Any) -> Any:
        raw = msg.raw_message
        records: Sequence[Any] = raw if isinstance(raw, tuple | list) else (raw,)
        accept = _accepted_types(records[0].topic) if records else None
        events: list[CloudEvent] = []
        by_id: dict[str, Any] = {}
        for record in records:
            if record.value is None and _compacted(record.topic):
                continue  # a tombstone: compaction's delete marker, announced by an event before it
            try:
                event = parse_event(record.value, record.headers, key=record.key, accept=accept)
            except ContractError as exc:
                await self.owner.dead_letter(record, exc.code, exc.detail)
                continue
            self.owner.clock.observe(event.time)
            events.append(event)
            by_id[event.id] = record
        if not events:
            self._skipped(msg)
            return None
        batch = isinstance(raw, tuple | list)
        decoded: Any = events if batch else events[0]

        async def _decoded(_: Any) -> Any:
            return decoded

        msg.set_decoder(_decoded)
        first = events[0]
        bound = structlog.contextvars.bind_contextvars(
            **({"batch_size": len(events)} if batch else
               {"event_id": first.id, "customer_id": first.subject, "event_type": first.type}),
            trace_id=_trace_id(first.traceparent),
        )
        trace_token = _trace_parent.set(None if batch else first.traceparent)
        records_token = _batch_records.set(by_id)
        key = (records[0].topic, records[0].partition, records[0].offset)
        try:
            result = await call_next(msg)
        except Rejected as exc:
            if batch:
                raise RuntimeError("batch handlers dead-letter single events with dead_letter_event()") from exc
            await self.owner.dead_letter(records[0], exc.code, exc.detail)
            self._skipped(msg)
            return None
        except TRANSIENT_ERRORS as exc:
            await self._back_off(key, "transient", exc)
            await msg.nack()  # read the records again (FastStream's own nack is then a no-op)
            raise
        except Exception as exc:
            attempts = await self._back_off(key, "error", exc)
            if attempts < self.owner.settings.handler_max_attempts:
                await msg.nack()
                raise
            # The record itself keeps failing: park it rather than stop the partition behind it.
            self.owner._attempts.pop(key, None)
            for record in records:
                await self.owner.dead_letter(record, "processing_failed", f"{type(exc).__name__}: {exc}")
            self._skipped(msg)
            return None
        else:
            self.owner._attempts.pop(key, None)
            return result
        finally:
            _trace_parent.reset(trace_token)
            _batch_records.reset(records_token)
            structlog.contextvars.reset_contextvars(**bound)

    def _skipped(self, msg: Any) -> None:
        if self.owner.skipped is not None:
            self.owner.skipped(msg)

    async def _back_off(self, key: tuple[str, int, int], kind: str, exc: BaseException) -> int:
        attempts = self.owner._attempts.get(key, 0) + 1
        self.owner._attempts[key] = attempts
        if len(self.owner._attempts) > 10_000:  # forget partitions that moved on
            self.owner._attempts.clear()
        self.owner.retries.labels(key[0], kind).inc()
        delay = min(10.0, 0.2 * 2 ** min(attempts, 6)) * (0.5 + random.random() / 2)
        log.warning("handler_failed_will_retry", topic=key[0], partition=key[1], offset=key[2], attempt=attempts,
                    error=type(exc).__name__, detail=str(exc)[:300], retry_in_s=round(delay, 2))
        await asyncio.sleep(delay)
        return attempts


def _accepted_types(topic: str) -> frozenset[str] | None:
    spec = TOPICS.get(topic)
    return frozenset(spec.events) if spec and spec.events else None


def _compacted(topic: str) -> bool:
    spec = TOPICS.get(topic)
    return spec is not None and spec.compacted


def _trace_id(traceparent: str | None) -> str | None:
    return traceparent.split("-")[1] if traceparent else None


def current_traceparent() -> str | None:
    """The W3C ``traceparent`` of the event being handled, to carry onto what it causes."""
    return _trace_parent.get()


async def dead_letter_event(middleware: DeadLetterMiddleware, event: CloudEvent, exc: Rejected) -> None:
    """From a batch handler: send one event of the batch to the DLQ and carry on with the rest."""
    records = _batch_records.get() or {}
    record = records.get(event.id)
    if record is None:
        raise LookupError(f"event {event.id} is not part of the batch being handled")
    await middleware.dead_letter(record, exc.code, exc.detail)


def by_subject(events: Iterable[Any]) -> dict[str, list[Any]]:
    """A batch's events per subject (customer), each subject's in the order read: the unit a batch
    handler may work on side by side while keeping one customer's changes in order."""
    groups: dict[str, list[Any]] = {}
    for event in events:
        groups.setdefault(event.subject, []).append(event)
    return groups


class OutboundRecord(NamedTuple):
    """A record ready for the producer: topic, key (the customer id), structured-mode value (None: a
    tombstone), headers."""

    topic: str
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


def trace_headers(cause: CloudEvent | None = None, own: str | None = None) -> list[tuple[str, bytes]]:
    """The headers of an outbound record: the content type, and the trace of what caused it (else
    the record's ``own``, else that of the event being handled)."""
    headers = [("content-type", CLOUDEVENTS_CONTENT_TYPE.encode())]
    traceparent = (cause.traceparent if cause else None) or own or current_traceparent()
    if traceparent:
        headers.append(("traceparent", traceparent.encode()))
    return headers


def outbound(event: CloudEvent, cause: CloudEvent | None = None) -> OutboundRecord:
    """``event`` in structured mode, keyed by customer id, for its own topic."""
    return OutboundRecord(event.topic, event.subject.encode(), serialize_event(event),
                          trace_headers(cause, event.traceparent))


class Publisher:
    """The one way a service publishes: its events, tombstones and dead letters go through one
    idempotent producer (acks from all in-sync replicas), built by the runtime and passed in to
    what publishes. Every call hands all its records to the producer before waiting for any, so
    that the producer fills its batches: a per-message publish path (middlewares, a correlation id
    each) cost more than the events themselves where a service emits thousands per batch."""

    def __init__(self, settings: ServiceSettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self._producer: AIOKafkaProducer | None = None
        self._sent = Counter("carecrm_records_published", "Records handed to the producer", ["topic"],
                             registry=registry)

    async def start(self) -> None:
        # Made here: aiokafka binds a producer to the running loop (apps are built before it runs).
        self._producer = AIOKafkaProducer(
            **admin_kwargs(self.settings), client_id=f"carecrm-{self.settings.service_name}", **PRODUCER_OPTIONS,
            partitioner=KeyHashCache())
        await self._producer.start()

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def send(self, records: Iterable[OutboundRecord]) -> Awaitable[Any]:
        """Hand ``records`` to the producer; return one awaitable for all their deliveries."""
        if self._producer is None:
            raise RuntimeError("the publisher is not started")
        deliveries = []
        for r in records:
            deliveries.append(await self._producer.send(r.topic, r.value, key=r.key, headers=r.headers))
            self._sent.labels(r.topic).inc()
        return asyncio.gather(*deliveries)

    async def publish(self, events: Iterable[CloudEvent], *, cause: CloudEvent | None = None,
                      causes: Callable[[CloudEvent], CloudEvent | None] | None = None) -> None:
        """Publish ``events`` and wait until every one is acknowledged. ``cause`` (or, per event,
        ``causes``) names what led to them, whose trace they carry on."""
        await (await self.send(outbound(e, causes(e) if causes else cause) for e in events))

    async def publish_json(self, topic: str, records: Iterable[tuple[str, str, CloudEvent | None]]) -> None:
        """Events already in structured mode (an outbox: validated and serialized when they were
        made), each as ``(customer id, JSON, cause)``: handed to the producer as they are, in order,
        and waited for. Reading them back into models to serialize them again cost more than the
        rest of a complaint's scheduler tick."""
        await (await self.send(OutboundRecord(topic, key.encode(), value.encode(), trace_headers(cause))
                               for key, value, cause in records))

    async def tombstone(self, topic: str, customer_id: str) -> None:
        """A null value for ``customer_id`` on a compacted topic, so compaction drops the key."""
        await (await self.send([OutboundRecord(topic, customer_id.encode(), None, [])]))

    async def raw(self, topic: str, value: bytes, key: bytes | None, headers: dict[str, str]) -> None:
        """A record as it is (a dead letter: the original bytes, the reason in the headers)."""
        await (await self.send([OutboundRecord(topic, key, value, [(k, v.encode()) for k, v in headers.items()])]))


def security(settings: ServiceSettings) -> BaseSecurity | None:
    protocol = settings.kafka_security_protocol
    if protocol == "PLAINTEXT":
        return None
    ssl_context = settings.ssl_context()
    if protocol == "SSL":
        return BaseSecurity(ssl_context=ssl_context)
    user = settings.kafka_sasl_username or ""
    password = settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else ""
    cls = {"SCRAM-SHA-256": SASLScram256, "SCRAM-SHA-512": SASLScram512, "PLAIN": SASLPlaintext}[
        settings.kafka_sasl_mechanism]
    return cls(user, password, ssl_context=ssl_context, use_ssl=protocol == "SASL_SSL")


def admin_kwargs(settings: ServiceSettings) -> dict[str, Any]:
    """Connection arguments for plain aiokafka clients (admin, benchmarks, tests)."""
    kwargs: dict[str, Any] = {"bootstrap_servers": settings.kafka_bootstrap_servers,
                              "security_protocol": settings.kafka_security_protocol}
    if settings.kafka_security_protocol in ("SSL", "SASL_SSL"):
        kwargs["ssl_context"] = settings.ssl_context()
    if settings.kafka_security_protocol.startswith("SASL"):
        kwargs["sasl_mechanism"] = settings.kafka_sasl_mechanism
        kwargs["sasl_plain_username"] = settings.kafka_sasl_username
        kwargs["sasl_plain_password"] = (
            settings.kafka_sasl_password.get_secret_value() if settings.kafka_sasl_password else None)
    return kwargs


class KeyHashCache:
    """aiokafka's default partitioner (murmur2 of the key, as the Java client) that remembers the
    hashes of recent keys. Services send bursts of events with one key (tiering sends eight for a
    new customer), and the pure-Python hash cost more than the send itself."""

    def __init__(self, size: int = 100_000) -> None:
        self.size = size
        self._hashes: dict[bytes, int] = {}

    def __call__(self, key: bytes | None, all_partitions: list[int], available: list[int]) -> int:
        if key is None:
            return DefaultPartitioner()(key, all_partitions, available)
        hashed = self._hashes.get(key)
        if hashed is None:
            if len(self._hashes) >= self.size:
                self._hashes.clear()
            hashed = self._hashes[key] = murmur2(key) & 0x7FFFFFFF
        return all_partitions[hashed % len(all_partitions)]


#: How every service produces (``Publisher``): idempotent, acknowledged by all in-sync replicas,
#: batched for 5 ms.
PRODUCER_OPTIONS: dict[str, Any] = {"acks": "all", "enable_idempotence": True, "linger_ms": 5}


def build_broker(
    settings: ServiceSettings,
    *,
    clock: Clock,
    registry: CollectorRegistry,
    publisher: Publisher,
    routers: Iterable[KafkaRouter] = (),
    description: str | None = None,
) -> tuple[KafkaBroker, DeadLetterMiddleware]:
    """The consumers: commit after handling, the DLQ middleware (dead letters go out through
    ``publisher``). FastStream's own producer publishes nothing of ours."""
    dead_letters = DeadLetterMiddleware(settings, clock, registry, publisher)
    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        client_id=f"carecrm-{settings.service_name}",
        security=security(settings),
        ack_policy=AckPolicy.NACK_ON_ERROR,
        middlewares=[
            KafkaPrometheusMiddleware(registry=registry, app_name=settings.service_name, metrics_prefix="carecrm"),
            dead_letters,
        ],
        routers=list(routers),
        logger=logging.getLogger(f"carecrm.{settings.service_name}.broker"),
        description=description,
        allow_auto_create_topics=False,
    )
    return broker, dead_letters


def subscriber_options(settings: ServiceSettings, topic: str, **overrides: Any) -> dict[str, Any]:
    """Options every subscriber shares: the group of its topic, commit after handling, where to start."""
    options = {
        "group_id": settings.group_for(topic),
        "ack_policy": AckPolicy.NACK_ON_ERROR,
        "auto_offset_reset": settings.kafka_auto_offset_reset,
    }
    options.update(overrides)
    return options


def batch_options(settings: ServiceSettings, topic: str, **overrides: Any) -> dict[str, Any]:
    """``subscriber_options`` of a batch subscriber: batches of the service's size and wait."""
    return subscriber_options(settings, topic, batch=True, max_records=settings.batch_max_records,
                              batch_timeout_ms=settings.batch_timeout_ms, **overrides)


async def ensure_topics(settings: ServiceSettings, specs: Iterable[TopicSpec] | None = None) -> list[str]:
    """Create the topics of the catalogue that are missing, with their contract configuration."""
    specs = list(specs if specs is not None else TOPICS.values())
    admin = AIOKafkaAdminClient(**admin_kwargs(settings), client_id=f"carecrm-{settings.service_name}-admin")
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(spec.name, settings.kafka_topic_partitions, settings.kafka_replication_factor,
                     topic_configs=dict(spec.config))
            for spec in specs if spec.name not in existing
        ]
        created = []
        for topic in missing:  # one at a time: a concurrent creator makes only its own call fail
            # aiokafka returns per-topic errors rather than raising them. "Already exists" is the
            # normal answer for a topic another service (or a moment ago, this one) created: the
            # broker's topic list lags behind the controller just after a creation.
            response = await admin.create_topics([topic])
            for _, code, *detail in response.topic_errors:
                if code == TopicAlreadyExistsError.errno:
                    continue
                if code:
                    raise for_code(code)(f"could not create topic {topic.name}: {detail[0] if detail else ''}")
                created.append(topic.name)
        if created:
            log.info("topics_created", topics=created)
        return created
    finally:
        await admin.close()
